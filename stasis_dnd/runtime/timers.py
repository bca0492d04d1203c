"""One thread and one heap for every call's timers.

Thousands of concurrent calls each hold a timer or two; a thread per timer
would cost a stack each. Callbacks run on the timer thread and must return at
once (they only hand an event to the dispatcher). A callback that raises is
counted and logged (`stasis_dnd.guard`) and the thread goes on: one bug must not
end every digit timeout and watchdog in the process.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from stasis_dnd.guard import ThreadErrors


class TimerHandle:
    """A scheduled callback; `cancel()` makes sure it never runs."""

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerWheel:
    """Runs callbacks after a delay, in due order, on one daemon thread.

    `clock` gives the time; a test with a clock of its own calls `run_due()`
    instead of `start()`, or `clock_changed()` after moving a started wheel's clock.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, errors: ThreadErrors | None = None
    ) -> None:
        self._clock = clock
        self._errors = errors or ThreadErrors()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wakeup:
            self._stopped = True
            self._wakeup.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def schedule(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(self._clock() + max(0.0, delay), callback)
        with self._wakeup:
            heapq.heappush(self._heap, (handle.due, next(self._order), handle))
            # Only an earlier deadline than the one being waited for needs a wake-up.
            if self._heap[0][2] is handle:
                self._wakeup.notify()
        return handle

    def pending(self) -> int:
        """Timers scheduled and not yet run or cancelled."""
        with self._wakeup:
            return sum(1 for _, _, h in self._heap if not h.cancelled)

    def clock_changed(self) -> None:
        """Make the timer thread look at the clock again now."""
        with self._wakeup:
            self._wakeup.notify()

    def run_due(self) -> int:
        """Run, on the calling thread, every callback due by now; how many ran."""
        ran = 0
        while True:
            with self._wakeup:
                handle = self._pop_due()
            if handle is None:
                return ran
            self._fire(handle)
            ran += 1

    def _pop_due(self) -> TimerHandle | None:
        """The next timer due by now, taken off the heap (call with the lock held)."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if self._heap and self._heap[0][0] <= self._clock():
            return heapq.heappop(self._heap)[2]
        return None

    def _fire(self, handle: TimerHandle) -> None:
        if handle.cancelled:
            return
        try:
            handle.callback()
        except Exception as error:
            self._errors.caught("timers", error)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                handle = None
                while not self._stopped:
                    handle = self._pop_due()
                    if handle is not None:
                        break
                    if not self._heap:
                        self._wakeup.wait()
                    else:
                        self._wakeup.wait(self._heap[0][0] - self._clock())
                if self._stopped or handle is None:
                    return
            self._fire(handle)
