"""Long-lived threads survive a bug in the work they run.

The exception is counted (`stasis_dnd_thread_errors_total{thread=...}`) and
logged: with its traceback at ERROR the first time a thread meets that kind
of exception, at debug after that, so an error repeating every tick cannot
flood the log. The thread then carries on.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import Counter

log = logging.getLogger("stasis_dnd")

# Distinct (thread, exception type) pairs logged at ERROR, at most.
_MAX_KINDS = 100


class ThreadErrors:
    """Where long-lived threads report the exceptions they caught (thread-safe)."""

    def __init__(self, counter: Counter | None = None) -> None:
        self._counter = counter
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()

    def caught(self, thread: str, error: BaseException, context: str = "") -> None:
        """Count and log `error`, caught by `thread`; `context` is a `key=value` detail."""
        if self._counter is not None:
            self._counter.labels(thread).inc()
        kind = (thread, type(error).__qualname__)
        with self._lock:
            first = kind not in self._seen and len(self._seen) < _MAX_KINDS
            if first:
                self._seen.add(kind)
        detail = f" {context}" if context else ""
        if first:
            log.error(
                "event=thread_error thread=%s%s error=%r (carrying on)",
                thread,
                detail,
                f"{type(error).__name__}: {error}",
                exc_info=error,
            )
        else:
            log.debug(
                "event=thread_error thread=%s%s error=%r again",
                thread,
                detail,
                f"{type(error).__name__}: {error}",
            )
