"""The running service: connects to ARI, hands events to the calls, recovers
parked channels on every (re)connect, and shuts down cleanly.

Threads: the WebSocket reader (only reads and hands on), the timer wheel,
a pool of call workers, the outbox's delivery thread, the sweep (once a
minute: channels parked in the app that no call owns), recovery after each
connect, the wait for the app name after another process took it
(`runtime.app_name`), and the main thread, which waits for a signal and runs
the shutdown. Each catches what its work raises, counts and logs it
(`stasis_dnd.guard`) and goes on; a call whose handling raised is sent back to
the dialplan.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stasis_dnd.ari.events import EventStream
from stasis_dnd.ari.rest import (
    AriAuthError,
    AriCertificateError,
    AriError,
    AriRest,
)
from stasis_dnd.ari.translate import BadEvent, translate
from stasis_dnd.backoff import Backoff
from stasis_dnd.core import DrainEnded, Event
from stasis_dnd.guard import ThreadErrors
from stasis_dnd.logs import strip_userinfo
from stasis_dnd.metrics import Metrics
from stasis_dnd.profiles import Profiles
from stasis_dnd.runtime.app_name import NAME_CONFIRM, NAME_WAIT_BASE, NAME_WAIT_CAP, wait_for_name
from stasis_dnd.runtime.dispatch import Dispatcher
from stasis_dnd.runtime.final_commands import RetryFinal
from stasis_dnd.runtime.holder import HAND_BACK, Holder, LockSession
from stasis_dnd.runtime.parked import Parked
from stasis_dnd.runtime.registry import CallRegistry, Recover
from stasis_dnd.runtime.storing import CallbackStore
from stasis_dnd.runtime.timers import TimerWheel
from stasis_dnd.settings import Settings

log = logging.getLogger("stasis_dnd")

# Distinct kinds of skipped messages are logged at warning once each, this
# many at most (a peer sending endless varieties of junk cannot flood the log).
_MAX_REMEMBERED_REASONS = 100
# How often the app asks Asterisk which channels are in the app, to take over
# any that no call owns (`CallRegistry.sweep`): one cheap GET a minute.
SWEEP_INTERVAL = 60.0
# How often the app checks that Asterisk still routes the app's calls to its
# socket: after a freeze, Asterisk 22 may serve a stale connection attempt that
# unregisters the app while our socket stays open (and answers pings).
REGISTRATION_CHECK = 10.0
# At shutdown, how long continues that ARI failed are still retried.
FINAL_GRACE = 10.0


class StartupError(Exception):
    """The app cannot start; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class HandOver:
    """A dispatcher item: another process took the app name; forget this channel."""


# (monotonic arrival time, the event socket's connection number, what arrived)
AppItem = tuple[float, int, Event | Recover | RetryFinal | HandOver]


class App:
    """One stasis-dnd instance serving one Asterisk."""

    def __init__(
        self,
        settings: Settings,
        store: CallbackStore,
        *,
        workers: int = 16,
        metrics: Metrics | None = None,
        lock: Callable[[], LockSession] | None = None,
    ) -> None:
        """`lock`: opens a session for the lock that elects the one instance
        that connects (`runtime.holder`); None: connect right away."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._store = store
        try:
            self._rest = AriRest(settings.ari, pool_size=workers + 2)
        except AriError as error:
            raise StartupError(str(error)) from None
        self._errors = ThreadErrors(self.metrics.thread_errors)
        self._timers = TimerWheel(errors=self._errors)
        self._dispatcher: Dispatcher[AppItem] = Dispatcher(
            self._handle, workers=workers, on_error=self._on_handler_error, errors=self._errors
        )
        # Playback ids must not repeat across restarts of the app.
        boot = format(int(time.time() * 1000) % 36**6, "x")
        self.calls = CallRegistry(
            profiles=Profiles(settings),
            rest=self._rest,
            store=store,
            timers=self._timers,
            submit=self._dispatcher.submit,
            metrics=self.metrics,
            id_prefix=boot,
            store_workers=workers,
        )
        try:
            self._stream = self._new_stream()
        except ValueError as error:
            self._rest.close()
            raise StartupError(f"[ari] {error}.") from None
        # Guards replacing `_stream` (after the app name was free again) against shutdown.
        self._stream_lock = threading.Lock()
        self._stop = threading.Event()
        # Set from ApplicationReplaced until the app name is ours again.
        self._replaced = threading.Event()
        # Set while this instance may hold the event socket (always, without a lock).
        self._holding = threading.Event()
        self._stream_started = False
        self._holder: Holder | None = None
        if lock is None:
            self._holding.set()
        else:
            self._holder = Holder(
                settings.ari.app,
                lock,
                on_acquired=self._on_lock_acquired,
                on_lost=self._on_lock_lost,
                gauge=self.metrics.lock_held,
            )
        self._exit_status = 0
        self._generation = 0
        self._ever_connected = False
        self._connected = threading.Event()
        self.sweep_interval = SWEEP_INTERVAL
        self.registration_check = REGISTRATION_CHECK
        self.name_wait_base = NAME_WAIT_BASE
        self.name_wait_cap = NAME_WAIT_CAP
        self.name_confirm = NAME_CONFIRM
        self._reasons_logged: set[str] = set()
        self._parked = Parked(
            app=settings.ari.app,
            rest=self._rest,
            calls=self.calls,
            submit=self._dispatcher.submit,
            errors=self._errors,
            stop=self._stop,
            current=self._current,
            not_registered=self._not_registered,
        )
        # The configured URL may carry `user:password@`; logs never do.
        self._safe_url = strip_userinfo(settings.ari.url)

    @property
    def holder(self) -> Holder | None:
        """The election among instances for this Asterisk (None: no shared database)."""
        return self._holder

    def _new_stream(self) -> EventStream:
        return EventStream(
            self.settings.ari,
            on_event=self._on_event,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            on_bad_message=self._on_bad_message,
            errors=self._errors,
        )

    # --- life cycle ---------------------------------------------------------

    def check_asterisk(self) -> None:
        """Fail fast on a wrong password or an untrusted certificate; only warn
        if Asterisk is not up yet."""
        try:
            info = self._rest.asterisk_info()
        except (AriAuthError, AriCertificateError) as error:
            raise StartupError(str(error)) from None
        except AriError as error:
            log.warning("event=ari_unreachable error=%r (will keep trying)", str(error))
            return
        version = info.get("system", {}).get("version", "?") if isinstance(info, dict) else "?"
        log.info("event=asterisk_found url=%s version=%s", self._safe_url, version)

    def start(self) -> None:
        if self.settings.metrics.listen:
            try:
                self.metrics.serve(self.settings.metrics.listen)
            except OSError as error:
                raise StartupError(
                    f"[metrics] listen {self.settings.metrics.listen}: {error.strerror}"
                ) from None
        self.check_asterisk()
        self._timers.start()
        self._dispatcher.start()
        self.calls.start()
        if self._holder is None:
            self._start_stream()
        else:
            self._holder.start()
        threading.Thread(target=self._sweep_loop, name="sweep", daemon=True).start()

    def run(self, install_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT (or `stop()`); return the exit status."""
        if install_signals:
            self._install_signals()
        self.start()
        log.info("event=started app=%s", self.settings.ari.app)
        self._stop.wait()
        self.shutdown()
        return self._exit_status

    def stop(self, status: int = 0) -> None:
        """Ask `run()` to shut down (thread-safe)."""
        self._exit_status = status
        self._stop.set()

    def shutdown(self) -> None:
        self.calls.draining = True
        if not self._holding.is_set():
            log.info("event=stopping calls=%d drain=none (standby)", len(self.calls))
        elif self._replaced.is_set():
            # The calls were handed over to the process that holds the app name.
            log.info(
                "event=stopping calls=%d drain=none (another process holds the app name)",
                len(self.calls),
            )
        else:
            self._drain()
        with self._stream_lock:
            stream = self._stream
        stream.stop()
        # Only now, with the socket closed, may a standby take over.
        if self._holder is not None:
            self._holder.stop()
        self._timers.stop()
        self._dispatcher.stop()
        self.calls.stop()
        self._rest.close()
        log.info("event=stopped")

    def _drain(self) -> None:
        drain = self.settings.ari.drain_timeout
        log.info("event=stopping calls=%d drain=%.0fs", len(self.calls), drain)
        finals = self.calls.final_commands
        # Hang-ups and continues still being retried are calls not yet over, too.
        _wait_while(lambda: bool(len(self.calls) or finals.retrying()), drain)
        now = time.monotonic()
        for channel_id in self.calls.channel_ids():
            self._dispatcher.submit(channel_id, (now, self._generation, DrainEnded()))
        self._dispatcher.wait_idle(timeout=5)
        # A call storing its request is continued once the answer is in
        # (within store_timeout): where it goes depends on that answer.
        _wait_while(lambda: bool(len(self.calls)), self.settings.ivr.store_timeout + 1.0)
        # A continue that failed just now gets a few retries before the exit.
        _wait_while(lambda: bool(finals.retrying()), FINAL_GRACE)
        if finals.retrying():
            log.warning(
                "event=left_parked channels=%d (ARI keeps failing; the next start takes them over)",
                finals.retrying(),
            )

    def _install_signals(self) -> None:
        def on_signal(signum: int, frame: object) -> None:
            if self._stop.is_set():
                log.warning("event=forced_exit signal=%d", signum)
                os._exit(1)
            self.stop(0)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # --- the event stream's callbacks (reader thread: never block) ----------

    def _on_event(self, message: Mapping[str, Any]) -> None:
        arrived = time.monotonic()
        if message.get("type") == "ApplicationReplaced":
            self._on_replaced()
            return
        try:
            routed = translate(message)
        except BadEvent as error:
            self._on_bad_message(str(message)[:200], str(error))
            return
        if routed is not None:
            channel_id, event = routed
            self._dispatcher.submit(channel_id, (arrived, self._generation, event))

    def _on_bad_message(self, excerpt: str, reason: str) -> None:
        self.metrics.bad_messages.inc()
        # "not JSON (Expecting ',' ...: char 36)" is one kind, whatever the position.
        kind = reason.split(" (", 1)[0]
        if kind in self._reasons_logged or len(self._reasons_logged) >= _MAX_REMEMBERED_REASONS:
            log.debug("event=bad_message reason=%r excerpt=%r", reason, excerpt)
            return
        self._reasons_logged.add(kind)
        log.warning("event=bad_message reason=%r excerpt=%r (skipped)", reason, excerpt)

    def _on_connected(self) -> None:
        self._generation += 1
        if self._ever_connected:
            self.metrics.reconnects.inc()
        self._ever_connected = True
        self.metrics.ari_connected.set(1)
        self._connected.set()
        log.info("event=ari_connected url=%s app=%s", self._safe_url, self.settings.ari.app)
        generation = self._generation
        # Asking Asterisk which channels are parked is REST: not on the reader.
        threading.Thread(
            target=self._parked.recover, args=(generation,), name="recovery", daemon=True
        ).start()

    def _on_disconnected(self, reason: str) -> None:
        self.metrics.ari_connected.set(0)
        self._connected.clear()
        level = logging.INFO if self._stop.is_set() or self._replaced.is_set() else logging.WARNING
        log.log(level, "event=ari_disconnected reason=%r", reason)

    # --- the app name taken by another process ----------------------------

    def _on_replaced(self) -> None:
        """ApplicationReplaced (reader thread): hand the calls over without a
        drain, close the socket, wait for the name in a thread of its own."""
        if self._replaced.is_set():
            return
        self._replaced.set()
        self.metrics.replaced.inc()
        log.warning(
            "event=app_replaced app=%s detail=%r",
            self.settings.ari.app,
            "another process connected with the same app name; calls handed over to it, "
            "waiting until the name is free",
        )
        now = time.monotonic()
        for channel_id in {*self.calls.channel_ids(), *self.calls.final_commands.channel_ids()}:
            self._dispatcher.submit(channel_id, (now, self._generation, HandOver()))
        # Asterisk 22 does not close a replaced socket; it would only sit idle.
        self._stream.stop()
        threading.Thread(target=self._wait_for_name, name="app-name-wait", daemon=True).start()

    def _wait_for_name(self) -> None:
        free = wait_for_name(
            self._rest,
            self.settings.ari.app,
            wait=self._stop.wait,
            backoff=Backoff(self.name_wait_base, self.name_wait_cap),
            confirm=self.name_confirm,
            metrics=self.metrics,
            errors=self._errors,
        )
        with self._stream_lock:
            # Lost the lock meanwhile, or took it again (which connected anew).
            if not free or self._stop.is_set() or not self._holding.is_set():
                return
            if not self._replaced.is_set():
                return
            self._replaced.clear()
            self._start_stream()

    def _start_stream(self) -> None:
        """Connect the event socket: the one made at start, else a new one."""
        if self._stream_started:
            self._stream = self._new_stream()
        self._stream_started = True
        self._stream.start()

    # --- the lock shared with standby instances ------------------------------

    def _on_lock_acquired(self) -> None:
        """This instance holds the lock (holder thread): connect; recovery
        after the connect takes over the channels parked in the app."""
        with self._stream_lock:
            if self._stop.is_set():
                return
            self._holding.set()
            self._replaced.clear()
            self.calls.draining = False
            self._start_stream()

    def _on_lock_lost(self) -> None:
        """The lock is gone (holder thread), so a standby may take it: send the
        calls in progress back to the dialplan, which serves callers without
        any database, then close the socket before the standby's FENCE is up."""
        self._holding.clear()
        self.calls.draining = True
        now = time.monotonic()
        for channel_id in self.calls.channel_ids():
            self._dispatcher.submit(channel_id, (now, self._generation, DrainEnded()))
        _wait_while(lambda: bool(len(self.calls)), HAND_BACK)
        with self._stream_lock:
            stream = self._stream
        stream.stop()

    # --- recovery -----------------------------------------------------------

    def _current(self, generation: int) -> bool:
        """Still the connection `generation`, holding the app name, not stopping."""
        return (
            generation == self._generation
            and not self._stop.is_set()
            and not self._replaced.is_set()
            and self._holding.is_set()
        )

    def _sweep_loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.wait(min(self.registration_check, self.sweep_interval)):
            # Not connected: the next connect recovers every parked channel anyway.
            # Replaced: the channels belong to the process holding the app name.
            if not self._connected.is_set() or self._replaced.is_set():
                continue
            if not self._holding.is_set():
                continue
            due = time.monotonic() - last_sweep >= self.sweep_interval
            try:
                if self._parked.check(self._generation, sweep=due):
                    last_sweep = time.monotonic()
            except Exception as error:
                self._errors.caught("sweep", error)

    def _not_registered(self, generation: int) -> None:
        """Asterisk has no such app while our socket is open: no call reaches
        us; a new connection registers the app again (and recovers calls)."""
        if not self._current(generation):
            return  # that connection is gone already
        log.warning(
            "event=app_not_registered app=%s detail=%r",
            self.settings.ari.app,
            "Asterisk lost the app's registration; reconnecting",
        )
        self.metrics.reregistrations.inc()
        self._stream.reconnect("Asterisk lost the app's registration")

    def _handle(self, channel_id: str, item: AppItem) -> None:
        arrived, connection, what = item
        if isinstance(what, HandOver):
            self.calls.hand_over(channel_id)
        elif self._replaced.is_set():
            log.debug("event=skipped channel=%s reason=app_name_taken", channel_id)
        else:
            self.calls.handle(channel_id, (arrived, connection, what))

    def _on_handler_error(self, channel_id: str, error: Exception) -> None:
        # Counted and logged by the dispatcher; here only the caller matters.
        if not self._replaced.is_set():
            self.calls.fail_safe(channel_id)


def _wait_while(condition: Callable[[], bool], seconds: float) -> None:
    """Poll `condition` until it is false or `seconds` have passed (shutdown only)."""
    deadline = time.monotonic() + seconds
    while condition() and time.monotonic() < deadline:
        time.sleep(0.05)
