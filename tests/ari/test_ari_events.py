"""EventStream against real WebSocket peers on loopback.

The peer is the `websockets` package's threaded server; a stalled Asterisk is a
raw socket that completes the upgrade and then never says anything again.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import socket
import threading
import time
from http import HTTPStatus
from typing import Any

import pytest
import websocket
from events_kit import (
    PASSWORD,
    WAIT,
    AriWsServer,
    Harness,
    SilentPeer,
    drop,
    settings_for,
    start_connected,
)
from websocket._handshake import handshake_response

from stasis_dnd.ari.event_socket import events_url
from stasis_dnd.ari.events import EventStream
from stasis_dnd.backoff import Backoff
from stasis_dnd.settings import AriSettings

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
