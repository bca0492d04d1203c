"""One thread and one heap for every call's timers.

Thousands of concurrent calls each hold a timer or two; a thread per timer
would cost a stack each. Callbacks run on the timer thread and must return at
once (they only hand an event to the dispatcher).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


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
    """Runs callbacks after a delay, in due order, on one daemon thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
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

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopped:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._wakeup.wait()
                        continue
                    delay = self._heap[0][0] - self._clock()
                    if delay <= 0:
                        break
                    self._wakeup.wait(delay)
                if self._stopped:
                    return
                handle = heapq.heappop(self._heap)[2]
            if not handle.cancelled:
                handle.callback()
