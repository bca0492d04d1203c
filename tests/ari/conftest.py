"""Fixtures of the EventStream tests: a WebSocket peer and a harness whose
streams are stopped at the end of each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from events_kit import WAIT, AriWsServer, Harness, SilentPeer


@pytest.fixture
def server() -> Iterator[AriWsServer]:
    peer = AriWsServer()
    yield peer
    peer.close()


@pytest.fixture
def peer() -> Iterator[SilentPeer]:
    """A raw peer that completes the upgrade and writes only what a test sends."""
    raw = SilentPeer()
    yield raw
    raw.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    kit = Harness()
    yield kit
    for stream in kit.streams:
        assert stream.stop(timeout=WAIT)
