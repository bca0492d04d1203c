"""The timer wheel and the per-call dispatcher."""

from __future__ import annotations

import threading
import time

from stasis_dnd.shell.dispatch import Dispatcher
from stasis_dnd.shell.timers import TimerWheel


def test_timers_fire_in_due_order_and_cancel() -> None:
    wheel = TimerWheel()
    wheel.start()
    fired: list[str] = []
    done = threading.Event()
    try:

        def last() -> None:
            fired.append("late")
            done.set()

        wheel.schedule(0.2, last)
        cancelled = wheel.schedule(0.05, lambda: fired.append("cancelled"))
        wheel.schedule(0.1, lambda: fired.append("early"))
        wheel.schedule(0.0, lambda: fired.append("now"))
        cancelled.cancel()
        assert done.wait(10)
        assert fired == ["now", "early", "late"]
        assert wheel.pending() == 0
    finally:
        wheel.stop()


def test_one_thread_for_many_timers() -> None:
    wheel = TimerWheel()
    wheel.start()
    before = threading.active_count()
    count = threading.Semaphore(0)
    try:
        for n in range(1000):
            wheel.schedule(0.001 * (n % 10), count.release)
        assert threading.active_count() == before
        for _ in range(1000):
            assert count.acquire(timeout=10)
    finally:
        wheel.stop()


def test_dispatch_keeps_order_per_call_and_runs_calls_concurrently() -> None:
    seen: dict[str, list[int]] = {}
    slow_started = threading.Event()
    release_slow = threading.Event()
    lock = threading.Lock()

    def handle(key: str, item: int) -> None:
        if key == "slow" and item == 0:
            slow_started.set()
            release_slow.wait(10)
        with lock:
            seen.setdefault(key, []).append(item)

    dispatcher: Dispatcher[int] = Dispatcher(handle, workers=4)
    dispatcher.start()
    try:
        dispatcher.submit("slow", 0)
        assert slow_started.wait(10)
        for n in range(200):
            for key in ("a", "b", "c", "slow"):
                dispatcher.submit(key, n + 1)
        # The slow call holds one worker; the others finish meanwhile.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(seen.get(k, [])) < 200 for k in "abc"):
            time.sleep(0.01)
        assert all(seen[k] == list(range(1, 201)) for k in "abc")
        assert "slow" not in seen
        release_slow.set()
        assert dispatcher.wait_idle(10)
        assert seen["slow"] == list(range(201))
    finally:
        release_slow.set()
        dispatcher.stop()


def test_a_failing_handler_does_not_kill_the_worker() -> None:
    handled: list[int] = []

    def handle(key: str, item: int) -> None:
        if item == 1:
            raise RuntimeError("bug")
        handled.append(item)

    dispatcher: Dispatcher[int] = Dispatcher(handle, workers=1)
    dispatcher.start()
    try:
        for item in (1, 2, 3):
            dispatcher.submit("x", item)
        assert dispatcher.wait_idle(10)
        assert handled == [2, 3]
    finally:
        dispatcher.stop()
