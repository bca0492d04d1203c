"""The storing pool between a call and the callback service: the caller id
goes along with the number to call, and each result of the service becomes
the event the call is told (a repeat within the dedupe window is
`already_requested`, so the caller hears that instead of the confirmation)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from stasis_dnd.callbacks.intake import DUPLICATE_RESULT, FAILED, SENT, STORED
from stasis_dnd.core import (
    CallbackNotStored,
    CallbackStored,
    Channel,
    Event,
    RequestCallback,
    StasisStart,
)
from stasis_dnd.metrics import Metrics
from stasis_dnd.profiles import Profiles
from stasis_dnd.runtime.registry import CallRegistry
from stasis_dnd.runtime.storing import SENT_VARIABLE, Storing
from stasis_dnd.runtime.timers import TimerWheel
from stasis_dnd.settings import IvrSettings, Settings

A, B = "+79000000001", "+79000000002"


class Store:
    """Answers every request with `answer`; records what it was asked."""

    def __init__(self, answer: tuple[bool, str, str] = (True, STORED, "")) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, str]] = []

    def request(
        self,
        phone: str,
        channel_id: str,
        caller_id: str,
        context: tuple[tuple[str, str], ...] = (),
    ) -> tuple[bool, str, str]:
        self.asked.append((phone, channel_id, caller_id))
        return self.answer

    def stored_for_channel(self, channel_id: str) -> bool:
        return False


class Pool:
    """A started storing pool and what it tells the calls."""

    def __init__(self, store: Store) -> None:
        self.told: queue.Queue[tuple[str, Event]] = queue.Queue()
        self.rest = mock.Mock()
        self.metrics = Metrics()
        self.storing = Storing(
            rest=self.rest,
            store=store,
            submit=lambda channel, item: self.told.put((channel, item[2])),
            metrics=self.metrics,
            workers=1,
        )
        self.storing.start()

    def answer(self) -> tuple[str, Event]:
        return self.told.get(timeout=10)

    def counted(self, result: str) -> float:
        sample = self.metrics.registry.get_sample_value(
            "stasis_dnd_callback_requests_total", {"result": result}
        )
        return sample or 0.0


@pytest.fixture
def pools() -> Iterator[list[Pool]]:
    made: list[Pool] = []
    yield made
    for pool in made:
        pool.storing.stop()


def pool_for(pools: list[Pool], store: Store) -> Pool:
    pool = Pool(store)
    pools.append(pool)
    return pool


def test_the_caller_id_is_passed_to_the_store(pools: list[Pool]) -> None:
    store = Store()
    pool = pool_for(pools, store)
    pool.storing.request("c1", A, B)
    pool.answer()
    pool.storing.request("c2", B, "")
    pool.answer()
    assert store.asked == [(A, "c1", B), (B, "c2", "")]


@pytest.mark.parametrize(
    ("answer", "event"),
    [
        ((True, STORED, ""), CallbackStored()),
        ((True, DUPLICATE_RESULT, "repeats request 1"), CallbackStored(already_requested=True)),
        ((True, SENT, "outbox: disk full"), CallbackStored()),
        (
            (False, FAILED, "disk full; CRM: unavailable"),
            CallbackNotStored("disk full; CRM: unavailable"),
        ),
    ],
    ids=["stored", "duplicate", "sent", "failed"],
)
def test_each_result_becomes_the_event_the_call_is_told(
    pools: list[Pool], answer: tuple[bool, str, str], event: Event
) -> None:
    pool = pool_for(pools, Store(answer))
    pool.storing.request("c1", A, "")
    assert pool.answer() == ("c1", event)
    assert pool.counted(answer[1]) == 1  # the result label, "duplicate" for a repeat
    marked = [c.args for c in pool.rest.set_variable.call_args_list]
    assert marked == ([("c1", SENT_VARIABLE, "sent")] if answer[1] == SENT else [])


def test_a_store_that_raises_is_not_stored(pools: list[Pool]) -> None:
    store = Store()
    store.request = mock.Mock(side_effect=RuntimeError("bug"))  # type: ignore[method-assign]
    pool = pool_for(pools, store)
    pool.storing.request("c1", A, B)
    _, event = pool.answer()
    assert isinstance(event, CallbackNotStored) and "bug" in event.reason
    assert pool.counted(FAILED) == 1


def test_the_registry_hands_the_commands_caller_id_to_storing() -> None:
    told: queue.Queue[tuple[str, Any]] = queue.Queue()
    rest = mock.Mock()
    store = Store()
    timers = TimerWheel()
    timers.start()
    registry = CallRegistry(
        profiles=Profiles(Settings(ivr=IvrSettings(answer_pause=0))),
        rest=rest,
        store=store,
        timers=timers,
        submit=lambda channel, item: told.put((channel, item)),
        metrics=Metrics(),
        id_prefix="x",
    )
    registry.start()
    try:
        channel = Channel("c1", "Up", "", B, "en")
        registry.handle("c1", (time.monotonic(), 1, StasisStart(channel, ())))
        call = registry._calls["c1"]
        assert registry._carry_out(call, RequestCallback(A, caller_id=B)) is None
        assert told.get(timeout=10) == ("c1", mock.ANY)
        assert store.asked == [(A, "c1", B)]
    finally:
        registry.stop()
        timers.stop()
