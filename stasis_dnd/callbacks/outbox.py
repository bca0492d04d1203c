"""The outbox: callback requests stored durably in SQLite until the CRM has them.

A request is committed (WAL, synchronous=FULL) before the caller is promised a
callback, so a crash, a power cut or a SIGKILL after that loses nothing: the
next start delivers what is still pending, in order. The two writes of each
delivery (claiming a request, marking it delivered) are not fsynced on their
own (synchronous=NORMAL: the next FULL commit syncs them too): a power cut
just after them costs at most a repeat with the same `requestId`, which
delivery, being at least once, allows anyway; a crash of the app loses
nothing. Rows keep the number to
call, the caller's own number when it differs, the channel id, a request id
(uuid), the facts about the call sent with it (JSON) and times; never a
password. A file written by an older version gets the columns it lacks when
it is opened.

States: pending -> delivered | dead (given up after max_age and enough
attempts); a repeat "1" within the dedupe window is stored as a `duplicate`
of the first request and never sent. Times are Unix seconds passed in by the caller (the clock is
injectable). Safe to use from several threads and, through SQLite's locking,
from several processes (the `outbox` command works on a running service's file).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stasis_dnd.settings import DEFAULT_PROFILE

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
DUPLICATE = "duplicate"
STATES = (PENDING, DELIVERED, DEAD, DUPLICATE)

# A caller waits in silence while the row is written: do not wait long for a lock.
DEFAULT_BUSY_TIMEOUT = 1.0
# How long anything but a new request's write waits for the connection.
LOCK_TIMEOUT = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    -- max_age counts from here: created_at, or the last manual retry
    age_from REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    finished_at REAL,
    duplicate_of INTEGER,
    -- the caller's own number when they asked to be called at another one
    caller_id TEXT NOT NULL DEFAULT '',
    -- facts about the call for the CRM, a JSON object {fact: value}
    context TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, id);
CREATE INDEX IF NOT EXISTS requests_phone ON requests (phone, created_at);
CREATE INDEX IF NOT EXISTS requests_channel ON requests (channel_id);
"""
_SCHEMA_VERSION = 3
# Columns added since version 1, as ALTER TABLE adds them to an older file.
_ADDED_COLUMNS = {
    "caller_id": "caller_id TEXT NOT NULL DEFAULT ''",
    "context": "context TEXT NOT NULL DEFAULT '{}'",
}
_COLUMNS = (
    "id, request_id, phone, channel_id, created_at, state, attempts, "
    "next_attempt_at, age_from, last_error, finished_at, duplicate_of, caller_id, context"
)


class OutboxError(Exception):
    """The outbox cannot be opened or written; the message says why in one sentence."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored callback request."""

    id: int
    request_id: str
    phone: str
    channel_id: str
    created_at: float
    state: str
    attempts: int
    next_attempt_at: float
    age_from: float
    last_error: str
    finished_at: float | None
    duplicate_of: int | None
    # The caller's own number when `phone` is another one they keyed in; else "".
    caller_id: str = ""
    # Facts about the call for the CRM, (fact name, value) pairs.
    context: tuple[tuple[str, str], ...] = ()

    @property
    def profile(self) -> str:
        """The profile that served the call (`profile_of` its facts)."""
        return profile_of(self.context)

    def fact(self, name: str) -> str:
        """The value of one fact about the call, or "" if it has none."""
        return dict(self.context).get(name, "")


class Outbox:
    """The SQLite file of callback requests; open with `Outbox.open(path)`."""

    def __init__(self, path: str, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Outbox:
        """Open (creating the file and its directory if needed) or raise OutboxError."""
        parent = Path(path).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
            raise OutboxError(f"cannot create the outbox directory {parent}: {why}") from None
        db: sqlite3.Connection | None = None
        try:
            # Autocommit mode: every write below is one explicit transaction.
            # pragma: no mutate start, Python's implicit BEGIN never comes before an explicit one
            db = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            # pragma: no mutate end
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk (WAL fsynced) before the caller is promised.
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
            # Also proves the file is writable now rather than at the first caller.
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from None
        return cls(path, db)

    def close(self) -> None:
        # A write hung on a dead disk holds the lock: leave the file to the exit.
        with suppress(OutboxError), self._locked():
            self._db.close()

    def pragma(self, statement: str) -> None:
        """Run `PRAGMA statement` on this connection (tests use `query_only = 1`
        and `max_page_count` to make the outbox read-only or full)."""
        with self._lock:
            self._db.execute(f"PRAGMA {statement}")

    # --- storing -------------------------------------------------------------

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
    ) -> Entry:
        """Store a request to call `phone` durably; return it (state `duplicate`
        if it repeats a pending or delivered request for the same number to
        call and the same profile (the `profile` fact) within the window,
        whoever asked). Raises OutboxError if it could not be stored."""
        # The writer thread may wait for the lock: its caller's wait is bounded.
        with self._lock, self._write("store the request"):
            original = None  # pragma: no mutate: only tested for truth
            if dedupe_window > 0 and phone:
                earlier = self._db.execute(
                    "SELECT id, context FROM requests WHERE phone = ? AND state IN (?, ?)"
                    " AND created_at >= ? ORDER BY id",
                    (phone, PENDING, DELIVERED, now - dedupe_window),
                ).fetchall()
                # A repeat within the same profile: sales and support each call back.
                profile = profile_of(context)
                original = next(
                    (row for row in earlier if profile_of(_facts(row[1]).items()) == profile),
                    None,
                )
            state = DUPLICATE if original else PENDING
            cursor = self._db.execute(
                "INSERT INTO requests (request_id, phone, channel_id, created_at, state,"
                " next_attempt_at, age_from, finished_at, duplicate_of, caller_id, context)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request_id,
                    phone,
                    channel_id,
                    now,
                    state,
                    now,
                    now,
                    now if original else None,
                    original[0] if original else None,
                    caller_id,
                    # Readable in the file (test_outbox_edges); None would be False too.
                    json.dumps(dict(context), ensure_ascii=False),  # pragma: no mutate
                ),
            )
            row_id = cursor.lastrowid
        entry = self.get(int(row_id or 0))  # pragma: no mutate: an INSERT always has a row id
        assert entry is not None
        return entry

    # --- delivery ---------------------------------------------------------------

    def due(self, now: float, limit: int = 100, max_wait: float = math.inf) -> list[Entry]:
        """Pending requests whose next attempt is due, oldest first. One planned
        further ahead than `max_wait` is due too: the wall clock went back."""
        return self._select(
            "state = ? AND (next_attempt_at <= ? OR next_attempt_at > ?) ORDER BY id LIMIT ?",
            (PENDING, now, now + max_wait, limit),
        )

    def claim(self, row_id: int, seen_next: float, until: float) -> bool:
        """Take a due request for one attempt: move its next attempt to `until`
        if it is still pending and still due at `seen_next` (as `due()` read
        it). False: another process (an instance sharing this file) took it."""
        with self._locked(), self._write("claim a request", durable=False):
            cursor = self._db.execute(
                "UPDATE requests SET next_attempt_at = ?"
                " WHERE id = ? AND state = ? AND next_attempt_at = ?",
                (until, row_id, PENDING, seen_next),
            )
        return cursor.rowcount == 1

    def next_due(self) -> float | None:
        """When the earliest pending request is due, or None if none is pending."""
        with self._locked(), self._read():
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM requests WHERE state = ?", (PENDING,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def mark_delivered(self, row_id: int, now: float) -> None:
        with self._locked(), self._write("mark a request delivered", durable=False):
            self._db.execute(
                "UPDATE requests SET state = ?, finished_at = ?, attempts = attempts + 1"
                " WHERE id = ? AND state = ?",
                (DELIVERED, now, row_id, PENDING),
            )

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: float, *, counted: bool = True
    ) -> None:
        """Record a failed attempt and when to try this request again; `counted`:
        count it in `attempts` (not when the CRM as a whole was unreachable)."""
        with self._locked(), self._write("record a failed attempt"):
            self._db.execute(
                "UPDATE requests SET attempts = attempts + ?, last_error = ?,"
                " next_attempt_at = ? WHERE id = ? AND state = ?",
                (int(counted), error, next_attempt_at, row_id, PENDING),
            )

    def expire(self, now: float, max_age: float, min_attempts: int = 0) -> list[Entry]:
        """Dead-letter pending requests older than max_age that have had at
        least `min_attempts` attempts; return them."""
        where = "state = ? AND age_from < ? AND attempts >= ?"
        args = (PENDING, now - max_age, min_attempts)
        # Called on every delivery pass: stay a cheap read when nothing expired.
        if not self._select(f"{where} LIMIT 1", args):
            return []
        # No UPDATE ... RETURNING: it needs SQLite 3.35, older systems have less.
        with self._locked(), self._write("dead-letter old requests"):
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM requests WHERE {where} ORDER BY id",  # noqa: S608
                args,
            ).fetchall()
            self._db.execute(
                "UPDATE requests SET state = ?, finished_at = ?,"
                " last_error = CASE WHEN last_error = '' THEN 'never attempted'"
                " ELSE last_error END WHERE state = ? AND age_from < ? AND attempts >= ?",
                (DEAD, now, *args),
            )
        return [
            replace(
                _entry(row), state=DEAD, finished_at=now, last_error=row[9] or "never attempted"
            )
            for row in rows
        ]

    # --- for the operator ---------------------------------------------------------

    def get(self, row_id: int) -> Entry | None:
        found = self._select("id = ?", (row_id,))
        return found[0] if found else None

    def entries(self, state: str | None = None, limit: int = 100) -> list[Entry]:
        """The newest `limit` requests (of one state), oldest first."""
        where, args = ("state = ?", (state,)) if state else ("1", ())
        newest = self._select(f"{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return newest[::-1]

    def retry(self, row_id: int, now: float) -> Entry:
        """Send a dead (or pending) request again at once, with a fresh max_age.
        Raises OutboxError if there is no such request or it is not retryable."""
        with self._locked(), self._write("retry the request"):
            # Conditional, in one transaction: a row the delivery thread has just
            # marked delivered (another process, maybe) must not become pending again.
            changed = self._db.execute(
                "UPDATE requests SET state = ?, attempts = 0, next_attempt_at = ?, age_from = ?,"
                " finished_at = NULL WHERE id = ? AND state IN (?, ?)",
                (PENDING, now, now, row_id, DEAD, PENDING),
            ).rowcount
            found = self._db.execute("SELECT state FROM requests WHERE id = ?", (row_id,))
            state = found.fetchone()
        if state is None:
            raise OutboxError(f"there is no request {row_id} in the outbox")
        if not changed:
            raise OutboxError(f"request {row_id} is {state[0]}; only dead or pending ones retry")
        updated = self.get(row_id)
        assert updated is not None
        return updated

    def retry_dead(self, now: float) -> int:
        """Send every dead request again; return how many."""
        with self._locked(), self._write("retry dead requests"):
            cursor = self._db.execute(
                "UPDATE requests SET state = ?, attempts = 0, next_attempt_at = ?, age_from = ?,"
                " finished_at = NULL WHERE state = ?",
                (PENDING, now, now, DEAD),
            )
        return cursor.rowcount

    def purge(self, before: float) -> int:
        """Delete finished (delivered, dead, duplicate) requests created before
        `before`; pending ones are never purged. Return how many."""
        with self._locked(), self._write("purge old requests"):
            cursor = self._db.execute(
                "DELETE FROM requests WHERE state != ? AND created_at < ?", (PENDING, before)
            )
        return cursor.rowcount

    def prune_delivered(self, before: float) -> int:
        """Delete delivered and duplicate requests that finished before `before`
        (the service's `[outbox] keep`); return how many. Pending and dead ones
        stay: dead rows are the operator's evidence of callbacks never filed,
        removed only by hand (`outbox retry` or `outbox purge`)."""
        # SQLite reuses the freed pages for new rows: the file stops growing
        # without a VACUUM, which would lock out callers while it rewrites it.
        with self._locked(), self._write("prune delivered requests"):
            cursor = self._db.execute(
                "DELETE FROM requests WHERE state IN (?, ?) AND finished_at < ?",
                (DELIVERED, DUPLICATE, before),
            )
        return cursor.rowcount

    def has_channel(self, channel_id: str) -> bool:
        """Whether a request (of any state) was stored for this channel."""
        with self._locked(), self._read():
            row = self._db.execute(
                "SELECT 1 FROM requests WHERE channel_id = ? LIMIT 1", (channel_id,)
            ).fetchone()
        return row is not None

    def counts(self) -> dict[str, int]:
        """How many requests are in each state."""
        with self._locked(), self._read():
            rows = self._db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state")
            found = dict(rows.fetchall())
        return {state: int(found.get(state, 0)) for state in STATES}

    # --- plumbing -------------------------------------------------------------

    def _select(self, where: str, args: Sequence[object]) -> list[Entry]:
        with self._locked(), self._read():
            query = f"SELECT {_COLUMNS} FROM requests WHERE {where}"  # noqa: S608 - fixed text
            return [_entry(row) for row in self._db.execute(query, args).fetchall()]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection's lock, waited for at most LOCK_TIMEOUT: a write hung
        inside SQLite (a failing disk) must not hang shutdown, metrics or recovery."""
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise OutboxError(
                f"the outbox {self.path} is busy: a write has not finished within"
                f" {LOCK_TIMEOUT:g} s (a failing or very slow disk?)"
            )
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _read(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {self.path}: {exc}") from None

    @contextmanager
    def _write(self, what: str, *, durable: bool = True) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, fsynced unless not `durable`; any SQLite
        error becomes one OutboxError."""
        try:
            # Set by every write for itself: no earlier write's level can linger.
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:
                    self._rollback()
        except (sqlite3.Error, UnicodeError) as exc:
            raise OutboxError(f"cannot {what} in {self.path}: {exc}") from None

    def _rollback(self) -> None:
        # SQLite may have rolled back on its own already (e.g. on disk full).
        # pragma: no mutate start, a ROLLBACK that fails (or lower case) cannot be provoked
        with suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        # pragma: no mutate end


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to this schema. In one
    write transaction: the service and `outbox list` may open it at once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        present = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        for name, definition in _ADDED_COLUMNS.items():
            if name not in present:
                db.execute(f"ALTER TABLE requests ADD COLUMN {definition}")
        db.execute("COMMIT")  # pragma: no mutate: SQL keywords are case-insensitive
    finally:
        # pragma: no mutate start, a failed ALTER of an old file cannot be provoked
        if db.in_transaction:
            db.execute("ROLLBACK")
        # pragma: no mutate end


def _entry(row: tuple[Any, ...]) -> Entry:
    """An `Entry` from a row of `_COLUMNS`."""
    return replace(Entry(*row[:-1]), context=tuple(_facts(row[-1]).items()))


def _facts(text: object) -> dict[str, str]:
    """A row's context column (a value that is not a JSON object reads as none)."""
    try:
        found = json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        found = {}  # pragma: no mutate: anything but a dict reads as no facts
    pairs = found.items() if isinstance(found, dict) else ()
    return {str(name): value for name, value in pairs if isinstance(value, str)}


def profile_of(context: Iterable[tuple[str, str]]) -> str:
    """The profile a request's facts name; one stored before profiles existed
    was the default profile's."""
    # No fact, an empty one (or a None default) all read as the default profile.
    return dict(context).get("profile", "") or DEFAULT_PROFILE  # pragma: no mutate
