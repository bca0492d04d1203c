"""What the service needs of an outbox, and `open_outbox` to open the one the
settings name: the SQLite file at `[outbox] path` (the default), or the
shared PostgreSQL database at `[outbox] url`."""

from __future__ import annotations

import math
from typing import Protocol

from stasis_dnd.callbacks.outbox import DEFAULT_BUSY_TIMEOUT, Entry, Outbox
from stasis_dnd.callbacks.outbox_pg import PgOutbox
from stasis_dnd.callbacks.pg import safe_url
from stasis_dnd.settings import OutboxSettings


class OutboxStore(Protocol):
    """The outbox contract both backends keep (see callbacks/outbox.py)."""

    # Where it is, for messages and logs: a file path, or a URL without password.
    path: str

    def close(self) -> None: ...

    def add(
        self,
        phone: str,
        channel_id: str,
        request_id: str,
        now: float,
        dedupe_window: float = 0.0,
        *,
        caller_id: str = "",
        context: tuple[tuple[str, str], ...] = (),
    ) -> Entry: ...

    def due(self, now: float, limit: int = 100, max_wait: float = math.inf) -> list[Entry]: ...

    def claim(self, row_id: int, seen_next: float, until: float) -> bool: ...

    def next_due(self) -> float | None: ...

    def mark_delivered(self, row_id: int, now: float) -> None: ...

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: float, *, counted: bool = True
    ) -> None: ...

    def expire(self, now: float, max_age: float, min_attempts: int = 0) -> list[Entry]: ...

    def get(self, row_id: int) -> Entry | None: ...

    def entries(self, state: str | None = None, limit: int = 100) -> list[Entry]: ...

    def retry(self, row_id: int, now: float) -> Entry: ...

    def retry_dead(self, now: float) -> int: ...

    def purge(self, before: float) -> int: ...

    def prune_delivered(self, before: float) -> int: ...

    def has_channel(self, channel_id: str) -> bool: ...

    def counts(self) -> dict[str, int]: ...


def is_shared(settings: OutboxSettings) -> bool:
    """Whether the outbox is the shared PostgreSQL database (`[outbox] url`)."""
    return bool(settings.url)


def describe(settings: OutboxSettings) -> str:
    """Where the outbox is, safe to log: the file, or the URL without password."""
    if not is_shared(settings):
        return settings.path
    return safe_url(settings.url)


def open_outbox(
    settings: OutboxSettings, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> OutboxStore:
    """Open the configured outbox or raise OutboxError (one sentence, no
    password). `busy_timeout`: how long SQLite waits for a lock."""
    if not is_shared(settings):
        return Outbox.open(settings.path, busy_timeout=busy_timeout)
    return PgOutbox.open(settings.url, password=settings.password)
