"""A reconnect while a call's request is being stored must not restart the
call: the menu would offer the key again to a caller whose request is on its way."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any
from unittest import mock

from stasis_dnd.core import Channel, ChannelDtmfReceived, StasisStart, State
from stasis_dnd.metrics import Metrics
from stasis_dnd.profiles import Profiles
from stasis_dnd.runtime.registry import CallRegistry, Recover
from stasis_dnd.runtime.timers import TimerWheel
from stasis_dnd.settings import IvrSettings, Settings

CHANNEL = Channel("c1", "Up", "", "+79000000001", "en")


class SlowStore:
    """An outbox whose write finishes when the test says so."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written = threading.Event()

    def request(
        self,
        phone: str,
        channel_id: str,
        caller_id: str,
        context: tuple[tuple[str, str], ...] = (),
    ) -> tuple[bool, str, str]:
        self.release.wait(10)
        self.written.set()
        return True, "stored", ""

    def stored_for_channel(self, channel_id: str) -> bool:
        return self.written.is_set()


def test_a_reconnect_while_storing_keeps_the_call_and_its_answer() -> None:
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    rest = mock.Mock()
    rest.get_channel.return_value = {
        "id": "c1",
        "state": "Up",
        "caller": {"name": "", "number": "+79000000001"},
        "language": "en",
    }
    rest.get_variable.return_value = ""
    store = SlowStore()
    timers = TimerWheel()
    timers.start()
    registry = CallRegistry(
        profiles=Profiles(Settings(ivr=IvrSettings(answer_pause=0))),
        rest=rest,
        store=store,
        timers=timers,
        submit=lambda channel, item: items.put((channel, item)),
        metrics=Metrics(),
        id_prefix="x",
    )
    registry.start()
    try:
        registry.handle("c1", (time.monotonic(), 1, StasisStart(CHANNEL, ())))
        registry.handle("c1", (time.monotonic(), 1, ChannelDtmfReceived("1")))
        flow = registry._calls["c1"].flow
        read_back = flow.state
        registry.handle("c1", (time.monotonic(), 1, ChannelDtmfReceived("1")))  # confirms it
        assert (read_back, flow.state) == (State.READBACK, State.STORING)
        plays = rest.play.call_count
        registry.handle("c1", (time.monotonic(), 2, Recover(True, 2)))  # a reconnect
        assert registry._calls["c1"].flow is flow  # the same call, not a fresh menu
        assert rest.play.call_count == plays
        store.release.set()
        channel, item = items.get(timeout=10)
        registry.handle(channel, item)
        assert flow.callback_stored
        # Stored: the caller hears the confirmation (on by default), not the menu.
        assert rest.play.call_args.args[2] == f"sound:{IvrSettings().confirmation}"
    finally:
        store.release.set()
        registry.stop()
        timers.stop()
