"""The event reader reads ahead: one socket read serves as many frames as it
holds, so a burst of events costs one read, not two or three per event; and
frames cut anywhere, or longer than one read, still arrive whole."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import websocket
from events_kit import WAIT, Harness, SilentPeer

from stasis_dnd.ari.event_socket import READ_AHEAD


def text_frame(message: dict[str, Any]) -> bytes:
    """A server's (unmasked) text frame."""
    payload = json.dumps(message).encode()
    size = len(payload)
    if size < 126:
        return bytes([0x81, size]) + payload
    if size < 1 << 16:
        return bytes([0x81, 126]) + size.to_bytes(2, "big") + payload
    return bytes([0x81, 127]) + size.to_bytes(8, "big") + payload


def event(n: int, padding: int = 0) -> dict[str, Any]:
    return {"type": "ChannelDtmfReceived", "n": n, "pad": "x" * padding}


@pytest.fixture
def socket_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size asked of every read websocket-client makes of the socket."""
    sizes: list[int] = []
    real: Callable[[websocket.WebSocket, int], bytes] = websocket.WebSocket._recv

    def counting(ws: websocket.WebSocket, bufsize: int) -> bytes:
        sizes.append(bufsize)
        return real(ws, bufsize)

    monkeypatch.setattr(websocket.WebSocket, "_recv", counting)
    return sizes


def connected(harness: Harness, peer: SilentPeer) -> socket.socket:
    # A long ping interval: a reader that waited on the socket with frames
    # already read would sit there until the ping, far beyond WAIT.
    stream = harness.stream(peer.port, ping_interval=60.0, ping_timeout=5.0)
    stream.start()
    connection = peer.accepted.get(timeout=WAIT)
    assert stream.wait_connected(WAIT)
    return connection


def numbers(harness: Harness) -> list[int]:
    return [message["n"] for message in harness.rec.of("event")]


def test_a_burst_of_events_in_one_write_takes_one_read_and_none_waits(
    harness: Harness, peer: SilentPeer, socket_reads: list[int]
) -> None:
    connection = connected(harness, peer)
    before = len(socket_reads)
    connection.sendall(b"".join(text_frame(event(n)) for n in range(20)))
    harness.rec.wait_for(lambda: len(numbers(harness)) == 20)
    assert numbers(harness) == list(range(20))
    # Read apart, header and payload (short frames have no length to read):
    # 40 reads for these 20 frames.
    assert len(socket_reads) - before <= 2
    assert set(socket_reads[before:]) == {READ_AHEAD}


def test_a_frame_cut_into_single_bytes_arrives_whole(harness: Harness, peer: SilentPeer) -> None:
    connection = connected(harness, peer)
    frames = text_frame(event(1, padding=300)) + text_frame(event(2))
    for byte in frames:
        connection.sendall(bytes([byte]))
        time.sleep(0.001)
    harness.rec.wait_for(lambda: len(numbers(harness)) == 2)
    assert harness.rec.of("event") == [event(1, padding=300), event(2)]
    assert harness.rec.of("bad") == []


def test_a_frame_longer_than_one_read_ahead_arrives_whole(
    harness: Harness, peer: SilentPeer
) -> None:
    connection = connected(harness, peer)
    large = event(1, padding=3 * READ_AHEAD)
    connection.sendall(text_frame(large) + text_frame(event(2)))
    harness.rec.wait_for(lambda: len(numbers(harness)) == 2)
    assert harness.rec.of("event") == [large, event(2)]


def test_the_close_after_a_burst_is_read_after_its_events(
    harness: Harness, peer: SilentPeer
) -> None:
    connection = connected(harness, peer)
    close = bytes([0x88, 2]) + (1001).to_bytes(2, "big")
    connection.sendall(text_frame(event(1)) + text_frame(event(2)) + close)
    harness.rec.wait_for(lambda: bool(harness.rec.of("disconnected")))
    assert numbers(harness) == [1, 2]
    assert harness.rec.of("disconnected")[0] == "Asterisk closed the connection (code 1001)"
