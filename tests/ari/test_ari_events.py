"""EventStream against real WebSocket peers on loopback.

The peer is the `websockets` package's threaded server; a stalled Asterisk is a
raw socket that completes the upgrade and then never says anything again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import pytest
import websocket
from websocket._handshake import handshake_response
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from stasis_dnd.ari.event_socket import events_url
from stasis_dnd.ari.events import EventStream
from stasis_dnd.backoff import Backoff
from stasis_dnd.settings import AriSettings

PASSWORD = "s3cret+&pw"
WAIT = 10.0  # generous bound for conditions that normally hold in milliseconds


class Recorder:
    """Everything the stream reported, in order, with a way to wait for it."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, kind: str, value: Any = None) -> None:
        with self._lock:
            self.log.append((kind, value))

    def of(self, kind: str) -> list[Any]:
        with self._lock:
            return [value for k, value in self.log if k == kind]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Poll: some conditions (server requests, back-off) are not ours to notify."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; last reports {self.log[-5:]!r}"
            time.sleep(0.005)


class AriWsServer:
    """A WebSocket peer that records upgrade requests and hands out connections."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.reject: HTTPStatus | None = None
        self.redirect: tuple[HTTPStatus, str] | None = None  # status, Location
        # Sent the moment a connection opens, racing the client's on_connected.
        self.greeting: str | None = None
        self.connections: queue.Queue[ServerConnection] = queue.Queue()
        self._server: Server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.reject is not None:
            return connection.respond(self.reject, "no\n")
        if self.redirect is not None:
            status, location = self.redirect
            response = connection.respond(status, "")
            response.headers["Location"] = location
            return response
        return None

    def _handle(self, connection: ServerConnection) -> None:
        if self.greeting is not None:
            connection.send(self.greeting)
        self.connections.put(connection)
        # Hold the connection open until either side ends it.
        with contextlib.suppress(ConnectionClosed):
            for _ in connection:
                pass

    def next_connection(self) -> ServerConnection:
        return self.connections.get(timeout=WAIT)

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(WAIT)


def drop(connection: ServerConnection) -> None:
    """End the TCP connection without a WebSocket close frame."""
    connection.socket.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[AriWsServer]:
    peer = AriWsServer()
    yield peer
    peer.close()


def settings_for(port: int, path: str = "", connect_timeout: float = 2.0) -> AriSettings:
    return AriSettings(
        url=f"http://127.0.0.1:{port}{path}",
        username="dnd",
        password=PASSWORD,
        app="stasis-dnd",
        connect_timeout=connect_timeout,
        read_timeout=2.0,
    )


class Harness:
    """An EventStream wired to a Recorder; stopped at the end of the test."""

    def __init__(self) -> None:
        self.rec = Recorder()
        self.streams: list[EventStream] = []

    def stream(
        self, port: int, path: str = "", connect_timeout: float = 2.0, **options: Any
    ) -> EventStream:
        options.setdefault("backoff", Backoff(base=0.01, cap=0.05))
        options.setdefault("ping_interval", 0.5)
        options.setdefault("ping_timeout", 0.5)
        stream = EventStream(
            settings_for(port, path, connect_timeout),
            on_event=lambda message: self.rec.add("event", message),
            on_connected=lambda: self.rec.add("connected"),
            on_disconnected=lambda reason: self.rec.add("disconnected", reason),
            on_bad_message=lambda excerpt, reason: self.rec.add("bad", (excerpt, reason)),
            **options,
        )
        self.streams.append(stream)
        return stream

    def count(self, kind: str) -> Callable[[], int]:
        return lambda: len(self.rec.of(kind))


@pytest.fixture
def harness() -> Iterator[Harness]:
    kit = Harness()
    yield kit
    for stream in kit.streams:
        assert stream.stop(timeout=WAIT)


def start_connected(
    harness: Harness, server: AriWsServer, **options: Any
) -> tuple[EventStream, ServerConnection]:
    stream = harness.stream(server.port, **options)
    stream.start()
    connection = server.next_connection()
    assert stream.wait_connected(WAIT)
    return stream, connection


# -- the upgrade request -------------------------------------------------------


def test_credentials_travel_in_a_header_not_the_url(harness: Harness, server: AriWsServer) -> None:
    stream = harness.stream(server.port, path="/asterisk")
    stream.start()
    server.next_connection()
    request = server.requests[0]
    assert request.path == "/asterisk/ari/events?app=stasis-dnd&subscribeAll=false"
    assert PASSWORD not in request.path
    assert PASSWORD not in stream.url
    token = base64.b64encode(f"dnd:{PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {token}"


def test_events_url() -> None:
    settings = AriSettings(url="https://u:pw@pbx.example:8089/", app="my app&1")
    assert events_url(settings) == (
        "wss://pbx.example:8089/ari/events?app=my+app%261&subscribeAll=false"
    )
    with pytest.raises(ValueError, match="http"):
        events_url(AriSettings(url="ftp://pbx"))


# -- events --------------------------------------------------------------------


def test_events_arrive_in_order_after_on_connected(harness: Harness, server: AriWsServer) -> None:
    greeting = {"type": "StasisStart", "n": -1}
    server.greeting = json.dumps(greeting)
    _, connection = start_connected(harness, server)
    sent = [greeting]
    sent += [{"type": "ChannelDtmfReceived", "digit": str(i % 10), "n": i} for i in range(200)]
    sent.append({"type": "ApplicationReplaced", "application": "stasis-dnd"})
    for message in sent[1:]:
        connection.send(json.dumps(message))
    harness.rec.wait_for(lambda: len(harness.rec.of("event")) >= len(sent))
    assert harness.rec.of("event") == sent
    assert harness.rec.log[0] == ("connected", None)


def test_bad_messages_are_reported_and_skipped(harness: Harness, server: AriWsServer) -> None:
    stream, connection = start_connected(harness, server)
    connection.send("x" * 1000)
    connection.send("[1, 2]")
    connection.send('{"no": "type"}')
    connection.send(b"\x00\x01")
    connection.send(json.dumps({"type": "StasisStart"}))
    harness.rec.wait_for(lambda: len(harness.rec.of("event")) == 1)
    bad = harness.rec.of("bad")
    assert [reason.split(" (")[0] for _, reason in bad] == [
        "not JSON",
        "not a JSON object",
        'no "type" field',
        "a binary frame, not a JSON text message",
    ]
    assert bad[0][0] == "x" * 200
    assert harness.rec.of("event") == [{"type": "StasisStart"}]
    assert stream.connected


def test_a_failing_handler_does_not_end_the_stream(server: AriWsServer) -> None:
    got: list[dict[str, Any]] = []

    def on_event(message: dict[str, Any]) -> None:
        got.append(message)
        if message["n"] == 0:
            raise RuntimeError("bug in the runtime")

    stream = EventStream(settings_for(server.port), on_event, backoff=Backoff(0.01, 0.05))
    stream.start()
    try:
        connection = server.next_connection()
        for n in range(3):
            connection.send(json.dumps({"type": "X", "n": n}))
        deadline = time.monotonic() + WAIT
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m["n"] for m in got] == [0, 1, 2]
    finally:
        assert stream.stop(timeout=WAIT)


def test_a_bug_in_the_reader_is_logged_and_the_stream_reconnects(
    harness: Harness, server: AriWsServer, caplog: pytest.LogCaptureFixture
) -> None:
    stream, first = start_connected(harness, server, backoff=Backoff(0.01, 0.05))
    real = stream._read_until_closed
    calls = iter([True])

    def read(ws: Any) -> str:
        if next(calls, False):
            raise KeyError("a bug while reading")
        return real(ws)

    stream._read_until_closed = read  # type: ignore[method-assign]
    drop(first)  # the next connection's read raises at once ...
    server.next_connection()
    harness.rec.wait_for(lambda: len(harness.rec.of("connected")) == 3)  # ... and a third opens
    assert "event=thread_error thread=ari-events" in caplog.text
    assert "internal error; reconnecting" in harness.rec.of("disconnected")


# -- losing the connection -----------------------------------------------------


def test_reconnects_after_the_server_drops_the_connection(
    harness: Harness, server: AriWsServer
) -> None:
    stream, first = start_connected(harness, server)
    drop(first)
    second = server.next_connection()
    harness.rec.wait_for(lambda: len(harness.rec.of("connected")) == 2)
    second.send(json.dumps({"type": "StasisStart", "n": 2}))
    harness.rec.wait_for(lambda: len(harness.rec.of("event")) == 1)
    kinds = [kind for kind, _ in harness.rec.log]
    assert kinds == ["connected", "disconnected", "connected", "event"]
    assert harness.rec.of("disconnected") == ["Asterisk closed the connection"]
    assert stream.connected


def test_close_frame_reason_is_reported(harness: Harness, server: AriWsServer) -> None:
    _, connection = start_connected(harness, server)
    connection.close(1011, "going away")
    harness.rec.wait_for(lambda: len(harness.rec.of("disconnected")) == 1)
    assert harness.rec.of("disconnected") == [
        "Asterisk closed the connection (code 1011: going away)"
    ]


class SilentPeer:
    """Completes the WebSocket upgrade, then never reads or writes again."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self.accepted: queue.Queue[socket.socket] = queue.Queue()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = Headers()
            for line in head.decode().split("\r\n")[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    key[name.strip()] = value.strip()
            digest = hashlib.sha1((key["Sec-WebSocket-Key"] + self.GUID).encode()).digest()
            accept = base64.b64encode(digest).decode()
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            self.accepted.put(conn)

    def close(self) -> None:
        self._listener.close()
        while not self.accepted.empty():
            self.accepted.get().close()


def test_a_silently_stalled_server_is_noticed_by_keepalive(harness: Harness) -> None:
    peer = SilentPeer()
    try:
        # The default ping settings: a stall is noticed within about 5 s.
        stream = harness.stream(peer.port, ping_interval=2.0, ping_timeout=3.0)
        stream.start()
        assert stream.wait_connected(WAIT)
        harness.rec.wait_for(lambda: len(harness.rec.of("connected")) == 2, timeout=15.0)
        assert harness.rec.of("disconnected")[0] == "no answer to a ping within 3 s"
    finally:
        peer.close()


def test_401_on_upgrade_is_logged_once_without_traceback(
    harness: Harness, server: AriWsServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.reject = HTTPStatus.UNAUTHORIZED
    caplog.set_level(logging.DEBUG, logger="stasis_dnd.ari.events")
    stream = harness.stream(server.port)
    stream.start()
    harness.rec.wait_for(lambda: len(server.requests) >= 4)
    ours = [r for r in caplog.records if r.name == "stasis_dnd.ari.events"]
    errors = [r for r in ours if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "refused the ARI username or password (ari.conf)" in errors[0].getMessage()
    assert errors[0].exc_info is None
    assert all(PASSWORD not in r.getMessage() for r in ours)
    assert not stream.connected
    assert harness.rec.log == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_the_password_goes_nowhere_else(
    status: int, harness: Harness, server: AriWsServer, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = AriWsServer()
    try:
        location = f"ws://127.0.0.1:{elsewhere.port}/ari/events?app=stasis-dnd"
        server.redirect = (HTTPStatus(status), location)
        caplog.set_level(logging.WARNING, logger="stasis_dnd.ari.events")
        stream = harness.stream(server.port)
        stream.start()
        # Each attempt ends before the next: by the second, a followed one would have arrived.
        harness.rec.wait_for(lambda: stream.backoff.failures >= 2 or bool(elsewhere.requests))
        assert elsewhere.requests == []
        assert not stream.connected and harness.rec.log == []
        [record] = [r for r in caplog.records if r.name == "stasis_dnd.ari.events"]
        assert record.levelno == logging.ERROR and record.exc_info is None
        message = record.getMessage()
        assert f"ARI answered with a redirect (HTTP {status} to {location})" in message
        assert "set [ari] url to" in message
        assert PASSWORD not in message
    finally:
        elsewhere.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_as_websocket_client_1_2_reports_it_is_a_failed_attempt(
    status: int,
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Debian 12's websocket-client 1.2.3 returns from connect() on a 301/302/303 it
    # was told not to follow, and raises WebSocketBadStatusException on a 307/308.
    location = "ws://elsewhere.example/ari/events"

    def connect(self: websocket.WebSocket, url: str, **options: Any) -> None:
        if status >= 307:
            raise websocket.WebSocketBadStatusException(
                "Handshake status %d %s", status, "Redirect", {"location": location}
            )
        self.handshake_response = handshake_response(status, {"location": location}, None)
        self.connected = True

    monkeypatch.setattr(websocket.WebSocket, "connect", connect)
    caplog.set_level(logging.WARNING, logger="stasis_dnd.ari.events")
    stream = harness.stream(1)
    stream.start()
    harness.rec.wait_for(lambda: stream.backoff.failures >= 2)
    assert not stream.connected and harness.rec.log == []
    [record] = [r for r in caplog.records if r.name == "stasis_dnd.ari.events"]
    assert record.levelno == logging.ERROR
    assert f"ARI answered with a redirect (HTTP {status} to {location})" in record.getMessage()


def test_refused_connection_is_reported_differently(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="stasis_dnd.ari.events")
    stream = harness.stream(port)
    stream.start()
    harness.rec.wait_for(lambda: stream.backoff.failures >= 3)
    ours = [r for r in caplog.records if r.name == "stasis_dnd.ari.events"]
    assert len(ours) == 1
    assert ours[0].levelno == logging.WARNING
    assert "connection refused" in ours[0].getMessage()


# -- back-off ------------------------------------------------------------------


class TopOfRange(random.Random):
    """Always draws the largest allowed delay, to see the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=0.25, cap=5.0, rng=TopOfRange())
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 0.25


def test_backoff_is_jittered_within_bounds() -> None:
    backoff = Backoff(base=0.25, cap=5.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(2000)]
    assert all(0.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 1900
    assert max(delays) > 4.0


def test_backoff_resets_only_after_a_stable_connection(
    harness: Harness, server: AriWsServer
) -> None:
    server.reject = HTTPStatus.SERVICE_UNAVAILABLE
    stream = harness.stream(server.port, stable_after=1.0)
    stream.start()
    harness.rec.wait_for(lambda: len(server.requests) >= 4)
    server.reject = None
    first = server.next_connection()
    failures_before = stream.backoff.failures
    assert failures_before >= 4
    # A connection that ends at once does not count as healthy...
    drop(first)
    second = server.next_connection()
    harness.rec.wait_for(lambda: len(harness.rec.of("connected")) == 2)
    assert stream.backoff.failures == failures_before + 1
    # ...one that stayed up for stable_after does.
    time.sleep(1.2)
    drop(second)
    server.next_connection()
    harness.rec.wait_for(lambda: len(harness.rec.of("connected")) == 3)
    assert stream.backoff.failures == 1


# -- stopping ------------------------------------------------------------------


def test_stop_is_prompt_and_polite_while_connected(harness: Harness, server: AriWsServer) -> None:
    stream, connection = start_connected(harness, server)
    assert stream.stop(timeout=2.0)
    assert not stream.connected
    assert harness.rec.of("disconnected") == ["stopped"]
    # A close frame, not a bare TCP close (Asterisk warns "closed abruptly").
    harness.rec.wait_for(lambda: connection.close_code is not None)
    assert connection.close_code == 1000


def test_stop_is_prompt_during_a_long_backoff(harness: Harness, server: AriWsServer) -> None:
    server.reject = HTTPStatus.SERVICE_UNAVAILABLE
    stream = harness.stream(server.port, backoff=Backoff(base=30.0, cap=30.0))
    stream.start()
    harness.rec.wait_for(lambda: stream.backoff.failures >= 1)
    assert stream.stop(timeout=2.0)


def test_stop_is_prompt_while_the_upgrade_hangs(harness: Harness) -> None:
    # The TCP connection is accepted; nobody ever answers the upgrade request.
    with socket.create_server(("127.0.0.1", 0)) as mute:
        mute.settimeout(WAIT)
        stream = harness.stream(mute.getsockname()[1], connect_timeout=60.0)
        stream.start()
        accepted, _ = mute.accept()
        with accepted:
            assert accepted.recv(4096).startswith(b"GET /ari/events")
            assert stream.stop(timeout=3.0)
        assert harness.rec.log == []


def test_stop_from_a_callback(server: AriWsServer) -> None:
    stopped = threading.Event()
    holder: list[EventStream] = []

    def on_event(message: dict[str, Any]) -> None:
        holder[0].stop()
        stopped.set()

    stream = EventStream(settings_for(server.port), on_event, backoff=Backoff(0.01, 0.05))
    holder.append(stream)
    stream.start()
    server.next_connection().send(json.dumps({"type": "ApplicationReplaced"}))
    assert stopped.wait(WAIT)
    assert stream.stop(timeout=2.0)
    assert not stream.connected
