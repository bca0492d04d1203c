"""What only the SQLite outbox has: the file (WAL, full sync), and SQLite's
failures (read-only, full, locked) as one OutboxError sentence each. The
contract both backends keep is in test_outbox_contract.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stasis_dnd.callbacks.outbox import (
    DELIVERED,
    PENDING,
    Outbox,
    OutboxError,
)

T0 = 1_700_000_000.0
WINDOW = 1800.0


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "outbox.sqlite3")


@pytest.fixture
def box(path: str) -> Iterator[Outbox]:
    outbox = Outbox.open(path)
    yield outbox
    outbox.close()


def test_open_creates_the_directory_and_uses_wal_with_full_sync(path: str) -> None:
    outbox = Outbox.open(path)
    outbox.close()
    assert Path(path).is_file()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    # synchronous is per connection: check the outbox's own.
    outbox = Outbox.open(path)
    assert outbox._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    outbox.close()


def sync_levels(box: Outbox, act: Callable[[], object]) -> list[tuple[str, str]]:
    """(synchronous level, statement) for each write statement `act` runs:
    the level is the one last set on the connection before it."""
    seen: list[tuple[str, str]] = []
    level = ["?"]

    def trace(statement: str) -> None:
        if statement.startswith("PRAGMA synchronous"):
            level[0] = statement.rsplit(" ", 1)[1]
        elif statement.startswith(("INSERT", "UPDATE", "COMMIT")):
            seen.append((level[0], statement.split(" ", 1)[0]))

    box._db.set_trace_callback(trace)
    try:
        act()
    finally:
        box._db.set_trace_callback(None)
    return seen


def test_a_new_request_is_fsynced_even_right_after_a_delivery(box: Outbox) -> None:
    first = box.add("1", "c1", "r1", T0)
    # A delivery's claim and mark are not fsynced on their own (at least once covers a power cut).
    assert sync_levels(box, lambda: box.claim(first.id, T0, T0 + 30)) == [
        ("NORMAL", "UPDATE"),
        ("NORMAL", "COMMIT"),
    ]
    assert sync_levels(box, lambda: box.mark_delivered(first.id, T0 + 1)) == [
        ("NORMAL", "UPDATE"),
        ("NORMAL", "COMMIT"),
    ]
    # ... but the next request's commit is, whatever ran before it.
    assert sync_levels(box, lambda: box.add("2", "c2", "r2", T0 + 2)) == [
        ("FULL", "INSERT"),
        ("FULL", "COMMIT"),
    ]
    assert sync_levels(box, lambda: box.mark_failed(first.id, "down", T0 + 60)) == [
        ("FULL", "UPDATE"),
        ("FULL", "COMMIT"),
    ]


def test_open_fails_with_one_sentence_when_the_directory_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OutboxError) as caught:
        Outbox.open(str(blocker / "outbox.sqlite3"))
    message = str(caught.value)
    assert message.startswith(f"cannot create the outbox directory {blocker}: ")
    assert "\n" not in message


def test_open_fails_with_one_sentence_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "outbox.sqlite3"
    junk.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(OutboxError, match=r"cannot open the outbox .*not a database"):
        Outbox.open(str(junk))


def test_nothing_secret_is_stored(box: Outbox) -> None:
    box.add("+79001234567", "chan", "req", T0)
    columns = [row[1] for row in box._db.execute("PRAGMA table_info(requests)")]
    assert not [c for c in columns if "pass" in c or "user" in c]


def test_retry_does_not_resend_a_request_delivered_while_it_ran(box: Outbox, path: str) -> None:
    entry = box.add("1", "c1", "r1", T0)
    delivery = Outbox.open(path)  # the service's delivery thread, on its own connection
    fired: list[str] = []

    def deliver_first(statement: str) -> None:
        # Just before retry's write (after any read it made), the CRM's "ok" is recorded.
        if statement.startswith("BEGIN") and not fired:
            fired.append(statement)
            delivery.mark_delivered(entry.id, T0 + 1)

    box._db.set_trace_callback(deliver_first)
    try:
        with pytest.raises(OutboxError, match=f"^request {entry.id} is delivered; only dead"):
            box.retry(entry.id, T0 + 2)
    finally:
        box._db.set_trace_callback(None)
        delivery.close()
    assert fired
    done = box.get(entry.id)
    assert done is not None
    assert (done.state, done.attempts, done.finished_at) == (DELIVERED, 1, T0 + 1)
    assert box.due(T0 + 3) == []  # not sent a second time


def test_read_only_database_is_an_outbox_error(box: Outbox) -> None:
    box.pragma("query_only = 1")
    with pytest.raises(OutboxError, match=r"cannot store the request .*readonly"):
        box.add("1", "c1", "r1", T0)


def test_full_disk_is_an_outbox_error_and_loses_nothing_stored(box: Outbox) -> None:
    box.pragma("max_page_count = 8")
    stored = 0
    with pytest.raises(OutboxError, match="database or disk is full"):
        for n in range(10_000):
            box.add(f"+7900{n:07d}", f"chan-{n}", f"req-{n:05d}", T0)
            stored += 1
    assert stored > 0
    assert box.counts()[PENDING] == stored
    box.pragma("max_page_count = 1000000")  # space freed: storing works again
    box.add("1", "c", "after", T0)


def test_locked_database_is_an_outbox_error_after_a_short_wait(path: str) -> None:
    outbox = Outbox.open(path, busy_timeout=0.1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutboxError, match="locked"):
            outbox.add("1", "c1", "r1", T0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    outbox.add("1", "c1", "r1", T0)
    outbox.close()
