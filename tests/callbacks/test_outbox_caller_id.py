"""The caller's own number in a SQLite outbox file written by the previous
version: the column is added and the old rows kept (storing it, and leaving
it out of deduplication, is in test_outbox_contract.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stasis_dnd.callbacks.outbox import PENDING, Outbox

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
