"""The caller's own number in the outbox: stored beside the number to call,
added to an outbox file written by the previous version, and left out of
deduplication (which keys on the number to call)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stasis_dnd.callbacks.outbox import DUPLICATE, PENDING, Outbox

T0 = 1_700_000_000.0
WINDOW = 1800.0
A, B, C = "+79000000001", "+79000000002", "+79000000003"

# The table as the version before the caller id wrote it (user_version 1).
_OLD_SCHEMA = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    age_from REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    finished_at REAL,
    duplicate_of INTEGER
);
CREATE INDEX requests_state ON requests (state, id);
CREATE INDEX requests_phone ON requests (phone, created_at);
CREATE INDEX requests_channel ON requests (channel_id);
PRAGMA user_version = 1;
"""


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "outbox.sqlite3")


def old_outbox(path: str) -> None:
    """An outbox file as the previous version left it: one request pending."""
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    db.execute(
        "INSERT INTO requests (request_id, phone, channel_id, created_at, state,"
        " attempts, next_attempt_at, age_from, last_error)"
        " VALUES ('old-1', ?, 'chan-old', ?, 'pending', 2, ?, ?, 'failed: HTTP 500')",
        (A, T0, T0 + 60, T0),
    )
    db.commit()
    db.close()


def columns(path: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute("PRAGMA table_info(requests)")]
    finally:
        db.close()


def test_the_caller_id_is_stored_and_survives_reopening(path: str) -> None:
    box = Outbox.open(path)
    keyed_in = box.add(A, "chan-1", "r1", T0, caller_id=B)
    own = box.add(C, "chan-2", "r2", T0 + 1)
    assert (keyed_in.phone, keyed_in.caller_id) == (A, B)
    assert (own.phone, own.caller_id) == (C, "")
    box.close()
    reopened = Outbox.open(path)
    assert [(e.phone, e.caller_id) for e in reopened.due(T0 + 10)] == [(A, B), (C, "")]
    reopened.close()


def test_an_outbox_of_the_previous_version_gets_the_column_and_keeps_its_requests(
    path: str,
) -> None:
    old_outbox(path)
    assert "caller_id" not in columns(path)
    box = Outbox.open(path)
    [kept] = box.due(T0 + 60)
    assert (kept.request_id, kept.phone, kept.channel_id) == ("old-1", A, "chan-old")
    assert (kept.state, kept.attempts, kept.last_error) == (PENDING, 2, "failed: HTTP 500")
    assert kept.caller_id == ""
    added = box.add(C, "chan-new", "new-1", T0 + 100, caller_id=B)
    assert added.caller_id == B
    box.close()
    assert columns(path).count("caller_id") == 1
    # Opened again (the service, then `outbox list`): nothing is added twice.
    again = Outbox.open(path)
    assert [(e.request_id, e.caller_id) for e in again.entries()] == [("old-1", ""), ("new-1", B)]
    assert again._db.execute("PRAGMA user_version").fetchone() == (3,)
    again.close()
    assert columns(path).count("caller_id") == 1


def test_a_migrated_outbox_still_takes_the_previous_versions_rows(path: str) -> None:
    """A downgrade: the previous version inserts without naming caller_id."""
    old_outbox(path)
    Outbox.open(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO requests (request_id, phone, channel_id, created_at, state,"
        " next_attempt_at, age_from) VALUES ('old-2', ?, 'c', ?, 'pending', ?, ?)",
        (C, T0, T0, T0),
    )
    db.commit()
    db.close()
    box = Outbox.open(path)
    assert [e.caller_id for e in box.entries()] == ["", ""]
    box.close()


def test_the_same_number_to_call_from_another_caller_is_a_duplicate(path: str) -> None:
    box = Outbox.open(path)
    first = box.add(A, "chan-1", "r1", T0, WINDOW, caller_id=B)
    repeat = box.add(A, "chan-2", "r2", T0 + WINDOW, WINDOW, caller_id=C)
    own = box.add(A, "chan-3", "r3", T0 + WINDOW, WINDOW)
    assert (repeat.state, repeat.duplicate_of) == (DUPLICATE, first.id)
    assert (own.state, own.duplicate_of) == (DUPLICATE, first.id)
    assert repeat.caller_id == C  # kept on the duplicate, for the operator
    box.close()


def test_another_number_to_call_from_the_same_caller_is_not_a_duplicate(path: str) -> None:
    box = Outbox.open(path)
    box.add(A, "chan-1", "r1", T0, WINDOW, caller_id=B)
    other = box.add(C, "chan-2", "r2", T0 + 1, WINDOW, caller_id=B)
    # The caller's own number, called back at itself: not the number A was for.
    own = box.add(B, "chan-3", "r3", T0 + 2, WINDOW)
    assert (other.state, other.duplicate_of) == (PENDING, None)
    assert (own.state, own.duplicate_of) == (PENDING, None)
    box.close()
