"""Per-call ordering on a shared pool of worker threads.

Work for one call (its ARI events, its timers, its recovery) is handled in
the order it arrived, one item at a time; different calls run on different
workers, so a slow REST answer or a slow CRM for one caller never holds up
another caller's prompt. `submit()` never blocks: the WebSocket reader calls
it, and Asterisk drops a socket whose reader stalls. A handler that raises
is counted and logged (`stasis_dnd.guard`), then `on_error(key, error)` runs on
the same worker (the app sends that channel back to the dialplan), and the
worker goes on with the next item.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from stasis_dnd.guard import ThreadErrors

T = TypeVar("T")

# A busy call hands its worker back after this many items, so one chatty
# channel cannot starve the others.
_BATCH = 32


class _Mailbox(Generic[T]):
    __slots__ = ("items", "key", "scheduled")

    def __init__(self, key: str) -> None:
        self.key = key
        self.items: deque[T] = deque()
        self.scheduled = False


class Dispatcher(Generic[T]):
    """Runs `handle(key, item)` for every submitted item: in order per key,
    concurrently across keys, on `workers` threads."""

    def __init__(
        self,
        handle: Callable[[str, T], None],
        workers: int = 16,
        *,
        on_error: Callable[[str, Exception], None] | None = None,
        errors: ThreadErrors | None = None,
        name: str = "call-worker",
    ) -> None:
        self._handle = handle
        self._on_error = on_error
        self._errors = errors or ThreadErrors()
        self._lock = threading.Lock()
        self._boxes: dict[str, _Mailbox[T]] = {}
        self._ready: queue.SimpleQueue[_Mailbox[T] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
            for n in range(workers)
        ]
        self._idle = threading.Condition(self._lock)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, item: T) -> None:
        with self._lock:
            box = self._boxes.get(key)
            if box is None:
                box = self._boxes[key] = _Mailbox(key)
            box.items.append(item)
            if box.scheduled:
                return
            box.scheduled = True
        self._ready.put(box)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted item has been handled."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._boxes, timeout)

    def stop(self, timeout: float = 2.0) -> None:
        for _ in self._threads:
            self._ready.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _work(self) -> None:
        while True:
            box = self._ready.get()
            if box is None:
                return
            for _ in range(_BATCH):
                with self._lock:
                    if not box.items:
                        box.scheduled = False
                        del self._boxes[box.key]
                        if not self._boxes:
                            self._idle.notify_all()
                        break
                    item = box.items.popleft()
                self._run(box.key, item)
            else:
                self._ready.put(box)

    def _run(self, key: str, item: T) -> None:
        try:
            self._handle(key, item)
        except Exception as error:
            # A bug in one call's handling must not kill the worker.
            self._errors.caught("call-worker", error, f"key={key}")
            if self._on_error is None:
                return
            try:
                self._on_error(key, error)
            except Exception as second:
                self._errors.caught("call-worker", second, f"key={key} in=on_error")
