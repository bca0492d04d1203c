"""`FakeAsterisk`: the fake ARI server on loopback, run in a background
thread, with a thread-safe API for tests and benchmarks.

    with FakeAsterisk("user", "secret", "stasis-dnd", sounds={"vm-goodbye": 0.2}) as fake:
        ...start the app against fake.url...
        fake.wait_connected()
        call = fake.place_call("+79001234567", script=press("1", after=0.5))
        assert call.wait_done() == "hungup_by_app"
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from stasis_dnd.testing.fake_asterisk import ari_json
from stasis_dnd.testing.fake_asterisk.calls import FakeCall, Latency
from stasis_dnd.testing.fake_asterisk.http import DEFAULT_WRITE_TIMEOUT, AriHttp
from stasis_dnd.testing.fake_asterisk.pbx import DEFAULT_SOUNDS, REST_FAULT_KINDS, Pbx
from stasis_dnd.testing.fake_asterisk.script import parse as parse_script

T = TypeVar("T")


class FakeAsterisk:
    """A loopback HTTP + WebSocket server that behaves like Asterisk 22's ARI."""

    def __init__(
        self,
        username: str,
        password: str,
        app: str,
        sounds: Mapping[str, float] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        languages: Sequence[str] = ("en", "ru"),
        dialplan_linger: float = 10.0,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: serve https and wss with this server context (plain http if None)."""
        self.username = username
        self.password = password
        self.app = app
        self.host = host
        self._port = port
        self._write_timeout = write_timeout
        self._tls = tls
        self._sounds = dict(DEFAULT_SOUNDS if sounds is None else sounds)
        self._languages = tuple(languages)
        self._linger = dialplan_linger
        self._changed = threading.Condition()
        self._generation = 0  # bumped on every change the fake notifies
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._pbx: Pbx | None = None
        self._http: AriHttp | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeAsterisk:
        """Start the loop thread and listen; returns self."""
        if self._thread is not None:
            raise RuntimeError("the fake Asterisk is already running")
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready,), name="fake-asterisk", daemon=True
        )
        self._thread.start()
        ready.wait()
        self._pbx = self._call(self._new_pbx)
        self._http = AriHttp(self._pbx, self.username, self.password, self._write_timeout)
        self._http.place_call = self._place_from_json
        self._run(self._listen())
        return self

    def stop(self) -> None:
        """Close every connection and stop the thread."""
        if self._thread is None or self._loop is None:
            return
        self._run(self._shutdown(finish_tasks=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeAsterisk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port (chosen at start when 0 was given)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8088 (ARI is under /ari)."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self.host}:{self._port}"

    def stop_server(self) -> None:
        """Stop listening and cut every connection; channels stay parked in Stasis."""
        self._run(self._shutdown())

    def start_server(self) -> None:
        """Listen again on the same port."""
        self._run(self._listen())

    def restart(self, down_for: float = 0.0) -> None:
        """An app / Asterisk restart as the app sees it: connections cut, the
        port refuses for `down_for` seconds, then listens again; calls stay."""
        self.stop_server()
        time.sleep(down_for)
        self.start_server()

    def check(self) -> None:
        """Raise if a request made the fake itself fail (a bug in the fake)."""
        if self._http is not None and self._http.errors:
            raise AssertionError("fake Asterisk failed:\n" + self._http.errors[0])

    # --- callers -----------------------------------------------------------------

    def place_call(
        self,
        number: str = "+79001234567",
        *,
        name: str = "",
        state: str = "Up",
        language: str = "en",
        args: Iterable[str] = ("TIMEOUT",),
        script: Iterable[Sequence[Any]] = (),
    ) -> FakeCall:
        """A caller enters Stasis(app, args...); see `script` for what they do."""
        steps = parse_script(script)
        if state not in ari_json.CHANNEL_STATES:
            raise ValueError(f"state must be one of {sorted(ari_json.CHANNEL_STATES)}")
        arguments = tuple(args)
        pbx = self._require_pbx()
        return self._call(
            lambda: pbx.place_call(
                number=number, name=name, state=state, language=language, args=arguments,
                script=steps, act=self._actor,
            )
        )  # fmt: skip

    def calls(self) -> list[FakeCall]:
        """Every call placed so far, in order."""
        pbx = self._require_pbx()
        with pbx.lock:
            return list(pbx.calls.values())

    def channels_in_app(self) -> list[str]:
        """Ids of the channels still inside the app (as GET /applications says)."""
        return self._call(self._require_pbx().channels_in_app)

    def requests_arrived(self, channel_id: str) -> int:
        """REST requests for the channel that arrived, answered or not (yet)."""
        pbx = self._require_pbx()
        return self._call(lambda: pbx.arrivals[channel_id])

    def counters(self) -> dict[str, int]:
        """calls, stasis_failed, in_app, hungup_by_app, continued, caller_hung_up,
        rest_requests, rest_errors, events_sent, events_dropped, events_filtered,
        event_filter_set, playbacks, ws_*."""
        pbx = self._require_pbx()

        def read() -> dict[str, int]:
            counters = dict(pbx.counters)
            counters["in_app"] = len(pbx.channels_in_app())
            return counters

        return self._call(read)

    def event_urls(self) -> list[str]:
        """Path and query of every events WebSocket request, in order (secrets checks)."""
        http = self._require_http()
        return self._call(lambda: list(http.event_urls))

    def latencies(self) -> list[Latency]:
        """For each event the app acted on, how long it took to send a command."""
        pbx = self._require_pbx()
        return self._call(lambda: list(pbx.latencies))

    @property
    def connected(self) -> bool:
        """True while a WebSocket for the app is connected."""
        return self._pbx is not None and self._pbx.socket is not None

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until the app's WebSocket is connected."""
        self.wait_until(lambda: self.connected, timeout, "the app never connected its WebSocket")

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait until `condition()` is true; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._generation
            # Evaluated without the lock: the condition may itself ask the loop.
            if condition():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} (waited {timeout} s)")
            with self._changed:
                if self._generation == seen:
                    # The short cap covers conditions that change without a notification.
                    self._changed.wait(min(left, 0.05))

    # --- faults ------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Cut all WebSockets abruptly (no close frame); returns how many."""
        http = self._require_http()
        return self._call(http.drop_connections)

    def stall(self) -> None:
        """Sockets go silent: nothing sent, nothing read (pings unanswered), no close."""
        http = self._require_http()
        self._call(lambda: http.stall(True))

    def unstall(self) -> None:
        """Sockets flow again; events held back are sent."""
        http = self._require_http()
        self._call(lambda: http.stall(False))

    def forget_app(self) -> None:
        """Asterisk forgets the app while its WebSocket stays open and answers
        pings: calls no longer reach it, GET /applications/{app} says 404 (seen
        on Asterisk 22 after a freeze, when it served a stale connection attempt)."""
        pbx = self._require_pbx()
        self._call(pbx.forget_app)

    def set_rest_delay(self, seconds: float, channel_id: str | None = None) -> None:
        """Delay ARI answers: for one channel's requests, or for all (None)."""
        pbx = self._require_pbx()

        def apply() -> None:
            if channel_id is None:
                pbx.rest_delay = seconds
            elif seconds > 0:
                pbx.channel_delays[channel_id] = seconds
            else:
                pbx.channel_delays.pop(channel_id, None)

        self._call(apply)

    def fail_requests(
        self, channel_id: str, kind: str, *, status: int = 500, times: int | None = 1
    ) -> None:
        """Make the next `times` requests of one `kind` ("answer", "play",
        "continue", "hangup", "get") for a channel fail with HTTP `status`, or
        with the connection closed unanswered if `status` is 0. `times=None`:
        until cleared with `times=0`. Nothing happens to the channel."""
        if kind not in REST_FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(REST_FAULT_KINDS)}")
        pbx = self._require_pbx()

        def apply() -> None:
            if times == 0:
                pbx.rest_faults.pop((channel_id, kind), None)
            else:
                pbx.rest_faults[(channel_id, kind)] = (status, times)

        self._call(apply)

    def fail_application(self, *, status: int = 500, times: int | None = 1) -> None:
        """Make the next `times` GET /applications/{app} for the app answer HTTP
        `status`; `times=None`: until cleared with `times=0`."""
        pbx = self._require_pbx()

        def apply() -> None:
            if times == 0:
                pbx.rest_faults.pop((self.app, "application"), None)
            else:
                pbx.rest_faults[(self.app, "application")] = (status, times)

        self._call(apply)

    def refuse_event_filter(self, *, status: int = 404, times: int | None = None) -> None:
        """Answer PUT /applications/{app}/eventFilter with HTTP `status` (as an
        Asterisk older than 18 does), `times` times (None: until `times=0`)."""
        pbx = self._require_pbx()

        def apply() -> None:
            if times == 0:
                pbx.rest_faults.pop((self.app, "event_filter"), None)
            else:
                pbx.rest_faults[(self.app, "event_filter")] = (status, times)

        self._call(apply)

    def event_filter(self) -> tuple[list[str], list[str]]:
        """The app's allowed and disallowed event types, as last set."""
        f = self._require_pbx().event_filter
        return self._call(lambda: (list(f.allowed), list(f.disallowed)))

    def send_raw(self, text: str) -> int:
        """Send `text` as is on the app's socket(s) (fuzzing); returns how many."""
        http = self._require_http()
        return self._call(lambda: http.send_raw(text))

    # --- loop plumbing -----------------------------------------------------------

    def _run_loop(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    def _new_pbx(self) -> Pbx:
        return Pbx(self.app, self._sounds, self._languages, self._linger, self._notify)

    def _notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _actor(self, call: FakeCall) -> Callable[[tuple[object, ...]], None]:
        def act(step: tuple[object, ...]) -> None:
            steps = parse_script([step])
            pbx = self._require_pbx()
            if self._loop is None:
                raise RuntimeError("the fake Asterisk is not running")
            self._loop.call_soon_threadsafe(pbx.caller_acts, call, steps[0])

        return act

    def _place_from_json(self, spec: dict[str, Any]) -> str:
        """Runs on the loop (control endpoint)."""
        return self._require_pbx().place_from_json(spec, self._actor)

    async def _listen(self) -> None:
        http = self._require_http()
        # A request still waiting (an answer queued behind a prompt) must not
        # hold a restart up.
        self._runner = web.AppRunner(
            http.application(), handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self._port, reuse_address=True, ssl_context=self._tls
        )
        await site.start()
        if self._port == 0:
            server = site._server  # aiohttp exposes the bound port only here
            assert isinstance(server, asyncio.Server)
            self._port = server.sockets[0].getsockname()[1]

    async def _shutdown(self, *, finish_tasks: bool = False) -> None:
        if self._http is not None:
            self._http.stall(False)
            self._http.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if finish_tasks:
            # Socket writers and caller scripts: end them before the loop closes.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError("the fake Asterisk is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def _call(self, function: Callable[[], T]) -> T:
        """Run `function` on the loop thread and return its result."""
        if self._loop is None:
            if self._pbx is None:
                raise RuntimeError("the fake Asterisk is not started")
            return function()  # stopped: nothing else touches the state now
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(30)

    def _require_pbx(self) -> Pbx:
        if self._pbx is None:
            raise RuntimeError("the fake Asterisk is not started")
        return self._pbx

    def _require_http(self) -> AriHttp:
        if self._http is None:
            raise RuntimeError("the fake Asterisk is not started")
        return self._http
