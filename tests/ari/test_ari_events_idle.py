"""An idle EventStream sleeps until its next ping is due: stop() and
reconnect() wake it, rather than the reader polling a flag several times a
second (each wake-up costs CPU for nothing)."""

from __future__ import annotations

import select
import time
from typing import Any

import pytest
from events_kit import WAIT, AriWsServer, Harness, start_connected

_REAL_POLL = select.poll


class CountingPoll:
    """select.poll() that counts how often the reader waits."""

    waits = 0

    def __init__(self) -> None:
        self._poll = _REAL_POLL()

    def register(self, fd: Any, mask: int) -> None:
        self._poll.register(fd, mask)

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        CountingPoll.waits += 1
        return self._poll.poll(timeout)


def test_an_idle_reader_waits_once_until_the_ping_is_due(
    harness: Harness, server: AriWsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stasis_dnd.ari.events.select.poll", CountingPoll)
    CountingPoll.waits = 0
    stream, _ = start_connected(harness, server, ping_interval=30.0, ping_timeout=5.0)
    time.sleep(1.0)  # a busy machine only makes fewer wake-ups
    # Polling a stop flag every 0.2 s waited 5 times or more here.
    assert 1 <= CountingPoll.waits <= 2
    assert stream.stop(timeout=WAIT)
    assert harness.rec.of("disconnected") == ["stopped"]


def test_reconnect_wakes_an_idle_reader(harness: Harness, server: AriWsServer) -> None:
    stream, _ = start_connected(harness, server, ping_interval=30.0, ping_timeout=5.0)
    stream.reconnect("the app's registration was lost")
    # Without the wake-up, the reader would look again only when the ping is due (30 s).
    harness.rec.wait_for(lambda: len(harness.rec.of("connected")) == 2)
    assert harness.rec.of("disconnected") == ["reconnecting: the app's registration was lost"]
