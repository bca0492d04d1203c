"""Exponential back-off with full jitter: `Backoff` for reconnect loops and
queues that keep their failure count in memory, `full_jitter` for a count kept
elsewhere (the outbox persists one per callback request).

Full jitter (a uniform delay between 0 and the exponential ceiling) spreads
out clients that lost the same server at the same moment, so a restarted
Asterisk is not hit by all of them at once.
"""

from __future__ import annotations

import random


def ceiling(failures: int, base: float, cap: float) -> float:
    """The largest delay after `failures` failed tries: min(cap, base * 2**failures)."""
    # The exponent is clamped so a long outage cannot overflow the float.
    return min(cap, base * 2.0 ** min(failures, 62))


def full_jitter(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after `failures` failed tries: uniform(0, ceiling)."""
    # Computed from a count (persisted per request, or kept per queue), which is
    # why no retry library fits: they own the sleeping loop and keep state in memory.
    return rng.uniform(0.0, ceiling(failures, base, cap))


class Backoff:
    """Delays for successive failed attempts: uniform(0, min(cap, base * 2**n)).

    Call `next_delay()` after each failure and `reset()` once a connection has
    proved healthy. Not thread-safe: one reconnect loop owns one instance.
    """

    def __init__(
        self, base: float = 0.25, cap: float = 5.0, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("back-off needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failed attempts since the last reset."""
        return self._failures

    def ceiling(self) -> float:
        """The largest delay the next `next_delay()` can return."""
        return ceiling(self._failures, self.base, self.cap)

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before retrying."""
        delay = full_jitter(self._failures, self.base, self.cap, self._rng)
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Forget past failures: the next delay is short again."""
        self._failures = 0
