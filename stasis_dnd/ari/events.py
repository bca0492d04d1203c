"""ARI event stream: one WebSocket to /ari/events, reconnected forever.

A reader thread only reads frames, parses each JSON message once and hands it
to `on_event`, which must return at once (the runtime enqueues): Asterisk drops
a socket whose reader stalls for 100 ms (its `websocket_write_timeout`; see
docs/asterisk-behaviour.md). The thread also sends a
ping when the socket has been quiet for `ping_interval`, and treats silence for
`ping_timeout` after it as a dead connection, so a peer that vanished without
a TCP close is noticed within `ping_interval + ping_timeout` seconds. Idle, it
sleeps until the next ping is due: `stop()` and `reconnect()` wake it through
a socket pair of its own rather than it polling a flag.

websocket-client's `WebSocket` does the protocol (handshake, framing, pongs);
the loop is ours rather than `WebSocketApp.run_forever` because that one has no
connect timeout of its own (only a process-wide default), logs every failed
retry at ERROR, and needs a second thread per connection for pings.

Logging: connecting and losing the connection are the runtime's to log (it
gets `on_connected` / `on_disconnected`; here they are DEBUG only). Failed
attempts, which the runtime never sees, are logged here: when a reason first
appears or changes, then at most once per `failure_log_interval` (a refused
password or certificate at ERROR, since it needs an admin; never with a
traceback).

wss is verified like ARI's REST calls, with the same kind of context
(`stasis_dnd.tls.client_tls_context`: `[ari] ca_bundle` or the system's CAs). A
redirect in answer to the upgrade is a failed attempt, never followed: the
request carries the ARI password.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import websocket

from stasis_dnd.ari.event_socket import (
    EXCERPT_LIMIT,
    ReadAhead,
    UpgradeFailed,
    close_politely,
    close_reason,
    events_url,
    shutdown,
    upgrade,
)
from stasis_dnd.backoff import Backoff
from stasis_dnd.guard import ThreadErrors
from stasis_dnd.settings import AriSettings
from stasis_dnd.tls import client_tls_context

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], None]
BadMessageHandler = Callable[[str, str], None]
DisconnectHandler = Callable[[str], None]

# How a disconnect asked for by reconnect() is reported.
_RECONNECTING = "reconnecting: "


class EventStream:
    """Keeps the ARI event WebSocket open and delivers its events in order.

    Callbacks run on the reader thread and must return at once:
    `on_connected()` after each (re)connection, before its first event (the
    runtime recovers channels still parked in Stasis); `on_event(message)` for
    every JSON object with a "type", including `ApplicationReplaced` (another
    process took the app name; the runtime decides what to do, e.g. `stop()`);
    `on_bad_message(excerpt, reason)` for anything else, which is skipped;
    `on_disconnected(reason)` once for each `on_connected()`, also at `stop()`.
    """

    def __init__(
        self,
        settings: AriSettings,
        on_event: EventHandler,
        *,
        on_connected: Callable[[], None] | None = None,
        on_disconnected: DisconnectHandler | None = None,
        on_bad_message: BadMessageHandler | None = None,
        ping_interval: float = 2.0,
        ping_timeout: float = 3.0,
        backoff: Backoff | None = None,
        stable_after: float = 10.0,
        failure_log_interval: float = 60.0,
        errors: ThreadErrors | None = None,
    ) -> None:
        """`stable_after`: a connection that lasted this long resets the back-off.

        Raises ValueError for a URL that is not http(s) or an unusable
        `settings.ca_bundle`.
        """
        if ping_interval <= 0 or ping_timeout <= 0:
            raise ValueError("ping_interval and ping_timeout must be greater than 0")
        self.url = events_url(settings)
        self._username = settings.username
        self._ca_bundle = settings.ca_bundle
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        self._auth_header = "Authorization: Basic " + token
        self._connect_timeout = settings.connect_timeout
        self._io_timeout = settings.read_timeout
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_bad_message = on_bad_message
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff = backoff or Backoff(base=0.25, cap=5.0)
        self._stable_after = stable_after
        self._failure_log_interval = failure_log_interval
        self._errors = errors or ThreadErrors()
        wss = self.url.startswith("wss:")
        self._sslopt = {"context": client_tls_context(settings.ca_bundle)} if wss else {}
        self._stopping = threading.Event()
        # stop() and reconnect() write a byte here to wake a reader waiting in poll().
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._connected = threading.Event()
        self._reconnect_reason = ""  # set by reconnect(), read by the reader
        self._lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._reading = False  # guarded by _lock, like _ws
        self._thread: threading.Thread | None = None
        # Failure-log rate limiting, used only by the reader thread.
        self._last_failure: str | None = None
        self._last_failure_logged = 0.0

    # -- public control --------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._connected.is_set()

    @property
    def backoff(self) -> Backoff:
        """The back-off between reconnection attempts."""
        return self._backoff

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the WebSocket is open; False if `timeout` passed first."""
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Run the connect/read/reconnect loop in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("EventStream.start() called twice")
        self._thread = threading.Thread(target=self.run, name="ari-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Close the socket and end the loop; True if the thread ended in `timeout`.

        An open connection ends with a close frame (Asterisk logs an abrupt close
        as a warning). Safe to call from a callback. A TCP connect in progress
        cannot be interrupted; it ends within `connect_timeout`, delivering nothing.
        """
        self._stopping.set()
        with self._lock:
            # While reading, the wake-up makes the reader close politely; while
            # connecting, only a shutdown can wake it.
            if self._ws is not None and not self._reading:
                shutdown(self._ws)
        self._wake()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def reconnect(self, reason: str) -> None:
        """Close the open connection (politely) and open a new one after the
        usual back-off: for a socket that is open but no longer serves the app."""
        self._reconnect_reason = reason
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
            self._wake_out.send(b"\0")

    def run(self) -> None:
        """The loop itself, in the calling thread, until `stop()`."""
        while not self._stopping.is_set():
            try:
                uptime = self._connect_and_read()
            except Exception as error:  # a bug must not end the app's only source of events
                self._errors.caught("ari-events", error)
                uptime = self._abandon()
            if self._stopping.is_set():
                break
            # Uptime, not "got a message", marks health: an ApplicationReplaced
            # right after connecting must not make two rival processes spin.
            if uptime >= self._stable_after:
                self._backoff.reset()
            self._stopping.wait(self._backoff.next_delay())
        self._wake_in.close()
        self._wake_out.close()

    def _abandon(self) -> float:
        """After a bug mid-connection: drop the socket, as if Asterisk had."""
        with self._lock:
            ws, self._ws = self._ws, None
            self._reading = False
        was_connected = self._connected.is_set()
        self._connected.clear()
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.shutdown()  # type: ignore[no-untyped-call]
        if was_connected:
            self._call(self._on_disconnected, "internal error; reconnecting")
        return 0.0

    # -- one connection --------------------------------------------------------

    def _connect_and_read(self) -> float:
        """One connection attempt; how long it stayed open (0 if it never opened)."""
        ws = websocket.WebSocket(
            sslopt=self._sslopt, enable_multithread=True, skip_utf8_validation=True
        )
        with self._lock:
            if self._stopping.is_set():
                return 0.0
            self._ws = ws
        try:
            upgrade(
                ws,
                self.url,
                auth_header=self._auth_header,
                username=self._username,
                ca_bundle=self._ca_bundle,
                connect_timeout=self._connect_timeout,
                io_timeout=self._io_timeout,
            )
        except UpgradeFailed as failure:
            with self._lock:
                self._ws = None
            if not self._stopping.is_set():
                self._report_failure(failure)
            return 0.0
        with self._lock:
            stopped_meanwhile = self._stopping.is_set()
            self._reading = not stopped_meanwhile
            if stopped_meanwhile:
                self._ws = None
        if stopped_meanwhile:
            close_politely(ws)
            return 0.0
        opened = time.monotonic()
        self._connected.set()
        log.debug("event=ari_events_open url=%s", self.url)
        self._last_failure = None  # so the next outage's first failure is logged
        self._reconnect_reason = ""  # a request about an earlier connection
        self._call(self._on_connected)
        reason = self._read_until_closed(ws)
        self._connected.clear()
        with self._lock:
            self._ws = None
            self._reading = False
        if self._stopping.is_set() or reason.startswith(_RECONNECTING):
            close_politely(ws)
        ws.shutdown()  # type: ignore[no-untyped-call]
        log.debug("event=ari_events_closed url=%s reason=%r", self.url, reason)
        self._call(self._on_disconnected, reason)
        return time.monotonic() - opened

    def _read_until_closed(self, ws: websocket.WebSocket) -> str:
        """Read and deliver until the connection ends; return why it ended."""
        sock = ws.sock
        if sock is None:
            return "closed during the upgrade"
        tls = sock if isinstance(sock, ssl.SSLSocket) else None
        reads = ReadAhead(ws)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_in, select.POLLIN)
        woken = self._wake_in.fileno()
        last_heard = time.monotonic()
        ping_sent: float | None = None
        try:
            while not self._stopping.is_set():
                if self._reconnect_reason:
                    return f"{_RECONNECTING}{self._reconnect_reason}"
                now = time.monotonic()
                if ping_sent is not None:
                    if now - ping_sent >= self._ping_timeout:
                        return f"no answer to a ping within {self._ping_timeout:g} s"
                    wait = ping_sent + self._ping_timeout - now
                elif now - last_heard >= self._ping_interval:
                    ws.ping()
                    ping_sent = now
                    wait = self._ping_timeout
                else:
                    wait = last_heard + self._ping_interval - now
                # Bytes read ahead, or decrypted bytes TLS holds, are not shown
                # as readable by the socket.
                if not (reads.pending() or (tls and tls.pending())):
                    ready = {fd for fd, _ in poller.poll(int(wait * 1000) + 1)}
                    if woken in ready:
                        self._drain_wake()
                    if not ready - {woken}:
                        continue
                opcode, frame = ws.recv_data_frame(True)
                # Any frame proves the peer is alive, not only the pong.
                last_heard = time.monotonic()
                ping_sent = None
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._deliver(frame.data)
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    self._bad(frame.data, "a binary frame, not a JSON text message")
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    return close_reason(frame.data)
            return "stopped"
        except websocket.WebSocketConnectionClosedException:
            return "stopped" if self._stopping.is_set() else "Asterisk closed the connection"
        except websocket.WebSocketTimeoutException:
            return f"the connection stalled for {self._io_timeout:g} s"
        except (OSError, websocket.WebSocketException) as exc:
            if self._stopping.is_set():
                return "stopped"
            return f"{type(exc).__name__}: {exc}"[:EXCERPT_LIMIT]

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_in.recv(64)

    # -- messages --------------------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        if self._stopping.is_set():
            return
        try:
            message = json.loads(data)
        # ValueError: also UnicodeDecodeError. RecursionError: nested deeper than
        # the parser can go; uncaught, it would end this thread and all events.
        except (ValueError, RecursionError) as exc:
            self._bad(data, f"not JSON ({exc})")
            return
        if not isinstance(message, dict):
            self._bad(data, "not a JSON object")
        elif not isinstance(message.get("type"), str):
            self._bad(data, 'no "type" field')
        else:
            try:
                self._on_event(message)
            except Exception:
                log.exception("event=ari_handler_failed type=%s", message["type"])

    def _bad(self, data: bytes, reason: str) -> None:
        excerpt = data[:EXCERPT_LIMIT].decode("utf-8", "replace")
        log.debug("event=ari_bad_message reason=%r excerpt=%r", reason, excerpt)
        self._call(self._on_bad_message, excerpt, reason)

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            # A bug in the runtime must not end the event stream.
            log.exception("event=ari_callback_failed callback=%r", callback)

    # -- logging ---------------------------------------------------------------

    def _report_failure(self, failure: UpgradeFailed) -> None:
        now = time.monotonic()
        if (
            failure.reason == self._last_failure
            and now - self._last_failure_logged < self._failure_log_interval
        ):
            log.debug("event=ari_connect_failed url=%s reason=%r", self.url, failure.reason)
            return
        self._last_failure = failure.reason
        self._last_failure_logged = now
        level = logging.ERROR if failure.needs_admin else logging.WARNING
        log.log(
            level, "event=ari_connect_failed url=%s reason=%r (retrying)", self.url, failure.reason
        )
