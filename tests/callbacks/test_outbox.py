"""The SQLite outbox on its own: durable, ordered, deduplicating, and every
failure to write is one OutboxError sentence."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from stasis_dnd.callbacks.outbox import (
    DEAD,
    DELIVERED,
    DUPLICATE,
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


def test_requests_survive_reopening_and_come_out_in_order(path: str) -> None:
    outbox = Outbox.open(path)
    for n in range(3):
        outbox.add(f"+7900000000{n}", f"chan-{n}", f"req-{n}", T0 + n)
    outbox.close()  # as good as a crash: every add was committed
    reopened = Outbox.open(path)
    due = reopened.due(T0 + 10)
    assert [e.request_id for e in due] == ["req-0", "req-1", "req-2"]
    assert [e.state for e in due] == [PENDING] * 3
    assert due[0].phone == "+79000000000"
    assert due[0].channel_id == "chan-0"
    assert due[0].created_at == T0
    reopened.close()


def test_nothing_secret_is_stored(box: Outbox) -> None:
    box.add("+79001234567", "chan", "req", T0)
    columns = [row[1] for row in box._db.execute("PRAGMA table_info(requests)")]
    assert not [c for c in columns if "pass" in c or "user" in c]


def test_delivered_and_failed_attempts(box: Outbox) -> None:
    first = box.add("1", "c1", "r1", T0)
    second = box.add("2", "c2", "r2", T0)
    box.mark_failed(first.id, "failed: HTTP 500", T0 + 60)
    box.mark_delivered(second.id, T0 + 1)
    assert box.due(T0 + 59) == []
    [again] = box.due(T0 + 60)
    assert (again.attempts, again.last_error) == (1, "failed: HTTP 500")
    done = box.get(second.id)
    assert done is not None and (done.state, done.finished_at) == (DELIVERED, T0 + 1)
    assert box.next_due() == T0 + 60
    assert box.counts() == {PENDING: 1, DELIVERED: 1, DEAD: 0, DUPLICATE: 0}


def test_same_number_within_the_window_is_a_duplicate(box: Outbox) -> None:
    first = box.add("+79001234567", "c1", "r1", T0, WINDOW)
    second = box.add("+79001234567", "c2", "r2", T0 + 60, WINDOW)
    other = box.add("+79007654321", "c3", "r3", T0 + 60, WINDOW)
    assert (first.state, second.state, other.state) == (PENDING, DUPLICATE, PENDING)
    assert second.duplicate_of == first.id
    assert [e.request_id for e in box.due(T0 + 100)] == ["r1", "r3"]
    # A recently delivered request still counts.
    box.mark_delivered(first.id, T0 + 70)
    assert box.add("+79001234567", "c4", "r4", T0 + 120, WINDOW).state == DUPLICATE
    # Past the window (counted from the first request) it is a new request.
    assert box.add("+79001234567", "c5", "r5", T0 + WINDOW + 1, WINDOW).state == PENDING


def test_window_zero_turns_deduplication_off(box: Outbox) -> None:
    box.add("+79001234567", "c1", "r1", T0, 0)
    assert box.add("+79001234567", "c2", "r2", T0 + 1, 0).state == PENDING


def test_dead_requests_and_empty_numbers_are_not_duplicated(box: Outbox) -> None:
    first = box.add("+79001234567", "c1", "r1", T0, WINDOW)
    box.expire(T0 + 10, max_age=5)
    assert box.get(first.id).state == DEAD  # type: ignore[union-attr]
    assert box.add("+79001234567", "c2", "r2", T0 + 11, WINDOW).state == PENDING
    box.add("", "c3", "r3", T0, WINDOW)
    assert box.add("", "c4", "r4", T0, WINDOW).state == PENDING


def test_expire_dead_letters_with_the_last_error(box: Outbox) -> None:
    old = box.add("1", "c1", "r1", T0)
    young = box.add("2", "c2", "r2", T0 + 3600)
    untried = box.add("3", "c3", "r3", T0)
    box.mark_failed(old.id, "unavailable: Connection refused", T0)
    dead = box.expire(T0 + 86400 + 1, max_age=86400)
    assert [(e.id, e.state, e.last_error) for e in dead] == [
        (old.id, DEAD, "unavailable: Connection refused"),
        (untried.id, DEAD, "never attempted"),
    ]
    assert box.get(old.id).state == DEAD  # type: ignore[union-attr]
    assert box.get(young.id).state == PENDING  # type: ignore[union-attr]
    assert box.expire(T0 + 86400 + 2, max_age=86400) == []


def test_expire_spares_requests_short_of_the_minimum_attempts(box: Outbox) -> None:
    tried = box.add("1", "c1", "r1", T0)
    short = box.add("2", "c2", "r2", T0)
    for _ in range(3):
        box.mark_failed(tried.id, "failed: HTTP 500", T0)
    for _ in range(2):
        box.mark_failed(short.id, "failed: HTTP 500", T0)
    # The CRM unreachable: the error is noted, the attempt is not counted.
    box.mark_failed(short.id, "unavailable: Connection refused", T0 + 5, counted=False)
    noted = box.get(short.id)
    assert noted is not None
    assert (noted.attempts, noted.last_error, noted.next_attempt_at) == (
        2,
        "unavailable: Connection refused",
        T0 + 5,
    )
    dead = box.expire(T0 + 86400 + 1, max_age=86400, min_attempts=3)
    assert [(e.id, e.attempts) for e in dead] == [(tried.id, 3)]
    assert box.get(short.id).state == PENDING  # type: ignore[union-attr]
    box.mark_failed(short.id, "failed: HTTP 500", T0)
    assert [e.id for e in box.expire(T0 + 86400 + 1, max_age=86400, min_attempts=3)] == [short.id]


def test_retry_gives_a_dead_request_a_fresh_age(box: Outbox) -> None:
    entry = box.add("1", "c1", "r1", T0)
    box.mark_failed(entry.id, "unavailable: HTTP 503", T0)
    box.expire(T0 + 100, max_age=50)
    again = box.retry(entry.id, T0 + 200)
    assert (again.state, again.attempts, again.next_attempt_at) == (PENDING, 0, T0 + 200)
    assert again.request_id == "r1"  # the CRM can still recognise it
    assert box.expire(T0 + 240, max_age=50) == []
    assert [e.id for e in box.expire(T0 + 251, max_age=50)] == [entry.id]
    assert box.retry_dead(T0 + 300) == 1
    assert box.counts()[PENDING] == 1


def test_retry_refuses_unknown_and_delivered_requests(box: Outbox) -> None:
    entry = box.add("1", "c1", "r1", T0)
    box.mark_delivered(entry.id, T0)
    with pytest.raises(OutboxError, match=f"request {entry.id} is delivered"):
        box.retry(entry.id, T0)
    with pytest.raises(OutboxError, match="no request 999"):
        box.retry(999, T0)


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


def test_purge_never_deletes_pending_requests(box: Outbox) -> None:
    waiting = box.add("1", "c1", "r1", T0)
    done = box.add("2", "c2", "r2", T0)
    repeat = box.add("2", "c3", "r3", T0 + 1, WINDOW)
    recent = box.add("3", "c4", "r4", T0 + 5000)
    box.mark_delivered(done.id, T0)
    box.mark_delivered(recent.id, T0 + 5000)
    assert box.purge(before=T0 + 4000) == 2
    assert [e.id for e in box.entries()] == [waiting.id, recent.id]
    assert repeat.state == DUPLICATE


def test_prune_deletes_only_delivered_and_duplicate_requests_finished_before(
    box: Outbox,
) -> None:
    old = box.add("1", "c1", "r1", T0)
    repeat = box.add("1", "c2", "r2", T0 + 1, WINDOW)  # finished when stored
    late = box.add("2", "c3", "r3", T0)  # created as early, delivered later
    waiting = box.add("3", "c4", "r4", T0)
    dead = box.add("4", "c5", "r5", T0)
    box.mark_delivered(old.id, T0 + 10)
    box.mark_delivered(late.id, T0 + 5000)
    box.expire(T0 + 20, max_age=5)  # dead-letters c4 and c5, both pending till now
    box.retry(waiting.id, T0 + 30)
    assert box.prune_delivered(before=T0 + 4000) == 2
    assert [e.id for e in box.entries()] == [late.id, waiting.id, dead.id]
    assert box.get(repeat.id) is None
    assert box.get(dead.id).state == DEAD  # type: ignore[union-attr]
    # Long after: pending and dead requests are never pruned.
    assert box.prune_delivered(before=T0 + 10**9) == 1
    assert [(e.id, e.state) for e in box.entries()] == [(waiting.id, PENDING), (dead.id, DEAD)]


def test_entries_newest_n_oldest_first_and_by_state(box: Outbox) -> None:
    ids = [box.add(str(n), f"c{n}", f"r{n}", T0 + n).id for n in range(5)]
    box.mark_delivered(ids[1], T0)
    assert [e.id for e in box.entries(limit=3)] == ids[2:]
    assert [e.id for e in box.entries(DELIVERED)] == [ids[1]]


def test_has_channel(box: Outbox) -> None:
    box.add("1", "1700000000.42", "r1", T0)
    assert box.has_channel("1700000000.42")
    assert not box.has_channel("1700000000.43")


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


def test_use_after_close_is_an_outbox_error(path: str) -> None:
    outbox = Outbox.open(path)
    outbox.close()
    with pytest.raises(OutboxError):
        outbox.add("1", "c1", "r1", T0)
    with pytest.raises(OutboxError):
        outbox.has_channel("c1")


def test_unstorable_text_is_an_outbox_error(box: Outbox) -> None:
    with pytest.raises(OutboxError, match="surrogate"):
        box.add("\ud800", "c1", "r1", T0)
