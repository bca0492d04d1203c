"""The timer wheel and the per-call dispatcher."""

from __future__ import annotations

import functools
import logging
import threading

import pytest

from stasis_dnd.guard import ThreadErrors
from stasis_dnd.metrics import Metrics
from stasis_dnd.runtime.dispatch import Dispatcher
from stasis_dnd.runtime.timers import TimerWheel


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_timers_run_in_due_order_at_their_due_time_and_cancel() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)  # not started: the test runs what is due itself
    fired: list[str] = []
    wheel.schedule(20.0, lambda: fired.append("late"))
    cancelled = wheel.schedule(5.0, lambda: fired.append("cancelled"))
    wheel.schedule(10.0, lambda: fired.append("early"))
    wheel.schedule(0.0, lambda: fired.append("now"))
    wheel.schedule(-3.0, lambda: fired.append("past"))  # a negative delay is "now"
    cancelled.cancel()
    assert wheel.pending() == 4
    assert wheel.run_due() == 2
    assert fired == ["now", "past"]
    clock.now += 9.999
    assert wheel.run_due() == 0
    clock.now += 0.001  # due exactly now: runs
    assert wheel.run_due() == 1
    assert fired == ["now", "past", "early"]
    clock.now += 10.0
    assert wheel.run_due() == 1
    assert fired == ["now", "past", "early", "late"]
    assert wheel.pending() == 0


def test_equal_deadlines_run_in_the_order_they_were_scheduled() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    fired: list[int] = []
    for n in range(5):
        wheel.schedule(1.0, functools.partial(fired.append, n))
    clock.now += 1.0
    assert wheel.run_due() == 5
    assert fired == [0, 1, 2, 3, 4]


def test_a_callback_that_raises_is_counted_and_the_next_timers_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="stasis_dnd")
    metrics = Metrics()
    clock = Clock()
    wheel = TimerWheel(clock, errors=ThreadErrors(metrics.thread_errors))
    fired: list[str] = []

    def broken() -> None:
        raise ValueError("a bug in one call's timer")

    wheel.schedule(1.0, broken)
    wheel.schedule(1.0, lambda: fired.append("same tick"))
    wheel.schedule(2.0, broken)
    wheel.schedule(3.0, lambda: fired.append("later"))
    clock.now += 3.0
    assert wheel.run_due() == 4
    assert fired == ["same tick", "later"]
    labels = {"thread": "timers"}
    assert metrics.registry.get_sample_value("stasis_dnd_thread_errors_total", labels) == 2
    # The traceback once at ERROR; the same error again only at debug.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "event=thread_error thread=timers" in errors[0].getMessage()
    assert "again" in caplog.records[-1].getMessage()


def test_the_timer_thread_survives_a_callback_that_raises() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    wheel.start()
    done = threading.Event()
    try:

        def broken() -> None:
            raise RuntimeError("bug")

        wheel.schedule(0.0, broken)
        wheel.schedule(0.0, done.set)
        assert done.wait(10)
        # The thread sleeps until the next deadline of its clock; a jump wakes it.
        later = threading.Event()
        wheel.schedule(3600.0, later.set)
        clock.now += 3600.0
        wheel.clock_changed()
        assert later.wait(10)
    finally:
        wheel.stop()


def test_one_thread_for_many_timers() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    wheel.start()
    before = threading.active_count()
    count = threading.Semaphore(0)
    try:
        for n in range(1000):
            wheel.schedule(float(n % 10), count.release)
        assert threading.active_count() == before
        clock.now += 10.0
        wheel.clock_changed()
        for _ in range(1000):
            assert count.acquire(timeout=10)
    finally:
        wheel.stop()


def test_dispatch_keeps_order_per_call_and_runs_calls_concurrently() -> None:
    seen: dict[str, list[int]] = {}
    slow_started = threading.Event()
    release_slow = threading.Event()
    changed = threading.Condition()

    def handle(key: str, item: int) -> None:
        if key == "slow" and item == 0:
            slow_started.set()
            release_slow.wait(10)
        with changed:
            seen.setdefault(key, []).append(item)
            changed.notify_all()

    dispatcher: Dispatcher[int] = Dispatcher(handle, workers=4)
    dispatcher.start()
    try:
        dispatcher.submit("slow", 0)
        assert slow_started.wait(10)
        for n in range(200):
            for key in ("a", "b", "c", "slow"):
                dispatcher.submit(key, n + 1)
        # The slow call holds one worker; the others finish meanwhile.
        with changed:
            assert changed.wait_for(lambda: all(len(seen.get(k, [])) == 200 for k in "abc"), 10)
        assert all(seen[k] == list(range(1, 201)) for k in "abc")
        assert "slow" not in seen
        release_slow.set()
        assert dispatcher.wait_idle(10)
        assert seen["slow"] == list(range(201))
    finally:
        release_slow.set()
        dispatcher.stop()


def test_a_failing_handler_calls_on_error_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[tuple[str, int]] = []
    failed: list[tuple[str, str]] = []
    metrics = Metrics()

    def handle(key: str, item: int) -> None:
        if item == 1:
            raise RuntimeError(f"bug in {key}")
        handled.append((key, item))

    def on_error(key: str, error: Exception) -> None:
        failed.append((key, str(error)))
        if key == "y":
            raise KeyError("the fail-safe itself failed")

    dispatcher: Dispatcher[int] = Dispatcher(
        handle, workers=1, on_error=on_error, errors=ThreadErrors(metrics.thread_errors)
    )
    dispatcher.start()
    try:
        for key in ("x", "y"):
            for item in (1, 2, 3):
                dispatcher.submit(key, item)
        assert dispatcher.wait_idle(10)
        # Later items of the same key and of other keys are still handled.
        assert handled == [("x", 2), ("x", 3), ("y", 2), ("y", 3)]
        assert failed == [("x", "bug in x"), ("y", "bug in y")]
        value = metrics.registry.get_sample_value(
            "stasis_dnd_thread_errors_total", {"thread": "call-worker"}
        )
        assert value == 3  # two handler errors and the failing on_error
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2  # once per kind: RuntimeError, KeyError
        assert errors[0].startswith("event=thread_error thread=call-worker key=x ")
    finally:
        dispatcher.stop()
