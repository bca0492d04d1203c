"""The outbox in a shared PostgreSQL database: the contract of the SQLite
`Outbox` (callbacks/outbox.py), for several instances on several servers.

A request is committed before `add` returns. The dedupe check and the insert
run in one transaction under a transaction-level advisory lock on the number
and profile, so two instances storing the same number at once file one
request. A delivery claims a row with `SELECT ... FOR UPDATE SKIP LOCKED` and
a lease (its next attempt moved ahead): a dead instance's claim runs out and
another one sends it. The schema is created and migrated here (a version
table). Connection failures become one OutboxError sentence naming what to
fix; the password is never in it. One connection, behind a lock with a
bounded wait; a connection the server dropped (a restart) is made again.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from stasis_dnd.callbacks.outbox import (
    DEAD,
    DELIVERED,
    DUPLICATE,
    LOCK_TIMEOUT,
    PENDING,
    STATES,
    Entry,
    OutboxError,
    _facts,
    profile_of,
)
from stasis_dnd.callbacks.outbox_pg_schema import TABLE as _TABLE
from stasis_dnd.callbacks.outbox_pg_schema import migrate
from stasis_dnd.callbacks.pg import connect, first_line, psycopg_module, safe_url

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

_COLUMNS = (
    "id, request_id, phone, channel_id, created_at, state, attempts, "
    "next_attempt_at, age_from, last_error, finished_at, duplicate_of, caller_id, context"
)


class PgOutbox:
    """The callback requests in PostgreSQL; open with `PgOutbox.open(url)`."""

    def __init__(self, url: str, password: str) -> None:
        self._url = url
        self._password = password
        # Where it is, for messages: never the password.
        self.path = safe_url(url)
        self._db: psycopg.Connection[tuple[Any, ...]] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, url: str, *, password: str = "") -> PgOutbox:
        """Connect, create or migrate the schema, or raise OutboxError."""
        outbox = cls(url, password)
        with outbox._locked():
            db = outbox._connection()
            try:
                migrate(db)
            except OutboxError:
                outbox._drop()
                raise
            except psycopg_module().Error as exc:
                outbox._drop()
                why = first_line(exc)
                raise OutboxError(f"cannot set up the outbox in {outbox.path}: {why}") from None
        return outbox

    def close(self) -> None:
        with suppress(OutboxError), self._locked():
            self._closed = True
            self._drop()

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
        """Store a request (committed on return) or a `duplicate` of a pending or
        delivered one for the same number and profile within the window."""
        profile = profile_of(context)
        text = json.dumps(dict(context), ensure_ascii=False)

        def store(db: psycopg.Connection[tuple[Any, ...]]) -> int:
            original = None
            if dedupe_window > 0 and phone:
                # Not a unique constraint: "within the window of the new request"
                # is no key. The lock makes check-then-insert atomic across instances.
                db.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"{phone}\x1f{profile}",),
                )
                original = db.execute(
                    f"SELECT id FROM {_TABLE} WHERE phone = %s AND profile = %s"  # noqa: S608
                    " AND state IN (%s, %s) AND created_at >= %s ORDER BY id LIMIT 1",
                    (phone, profile, PENDING, DELIVERED, now - dedupe_window),
                ).fetchone()
            # ON CONFLICT: a retry after a commit whose answer was lost stores nothing twice.
            db.execute(
                f"INSERT INTO {_TABLE} (request_id, phone, channel_id, created_at, state,"  # noqa: S608
                " next_attempt_at, age_from, finished_at, duplicate_of, caller_id, context,"
                " profile) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (request_id) DO NOTHING",
                (
                    request_id,
                    phone,
                    channel_id,
                    now,
                    DUPLICATE if original else PENDING,
                    now,
                    now,
                    now if original else None,
                    original[0] if original else None,
                    caller_id,
                    text,
                    profile,
                ),
            )
            row = db.execute(
                f"SELECT id FROM {_TABLE} WHERE request_id = %s",  # noqa: S608
                (request_id,),
            ).fetchone()
            assert row is not None
            return int(row[0])

        row_id = self._run("store the request", store, write=True)
        entry = self.get(row_id)
        assert entry is not None
        return entry

    def import_entries(self, entries: Iterable[Entry]) -> list[Entry]:
        """Copy requests from another outbox as they are (new ids; a duplicate's
        `duplicate_of` is dropped); ones whose request id is here already are
        skipped. Return those copied."""

        def copy(db: psycopg.Connection[tuple[Any, ...]]) -> list[Entry]:
            copied = []
            for e in entries:
                found = db.execute(
                    f"INSERT INTO {_TABLE} (request_id, phone, channel_id, created_at, state,"  # noqa: S608
                    " attempts, next_attempt_at, age_from, last_error, finished_at, caller_id,"
                    " context, profile) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " %s) ON CONFLICT (request_id) DO NOTHING RETURNING id",
                    (
                        e.request_id,
                        e.phone,
                        e.channel_id,
                        e.created_at,
                        e.state,
                        e.attempts,
                        e.next_attempt_at,
                        e.age_from,
                        e.last_error,
                        e.finished_at,
                        e.caller_id,
                        json.dumps(dict(e.context), ensure_ascii=False),
                        e.profile,
                    ),
                ).fetchone()
                if found is not None:
                    copied.append(replace(e, id=int(found[0]), duplicate_of=None))
            return copied

        return self._run("copy requests", copy, write=True)

    # --- delivery ---------------------------------------------------------------

    def due(self, now: float, limit: int = 100, max_wait: float = math.inf) -> list[Entry]:
        """Pending requests due now (or planned beyond `max_wait`: the clock went back)."""
        far = now + max_wait if math.isfinite(max_wait) else math.inf
        return self._select(
            "state = %s AND (next_attempt_at <= %s OR next_attempt_at > %s) ORDER BY id LIMIT %s",
            (PENDING, now, far, limit),
        )

    def claim(self, row_id: int, seen_next: float, until: float) -> bool:
        """Take a due request for one attempt until `until` (a lease); False:
        another instance has it (locked right now, or already claimed)."""

        def take(db: psycopg.Connection[tuple[Any, ...]]) -> bool:
            # SKIP LOCKED: a row another instance is claiming is simply not ours.
            row = db.execute(
                f"SELECT id FROM {_TABLE} WHERE id = %s AND state = %s"  # noqa: S608
                " AND next_attempt_at = %s FOR UPDATE SKIP LOCKED",
                (row_id, PENDING, seen_next),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                f"UPDATE {_TABLE} SET next_attempt_at = %s WHERE id = %s",  # noqa: S608
                (until, row_id),
            )
            return True

        return self._run("claim a request", take, write=True)

    def next_due(self) -> float | None:
        row = self._one(f"SELECT MIN(next_attempt_at) FROM {_TABLE} WHERE state = %s", (PENDING,))  # noqa: S608
        return None if row is None or row[0] is None else float(row[0])

    def mark_delivered(self, row_id: int, now: float) -> None:
        self._change(
            "mark a request delivered",
            "SET state = %s, finished_at = %s, attempts = attempts + 1"
            " WHERE id = %s AND state = %s",
            (DELIVERED, now, row_id, PENDING),
        )

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: float, *, counted: bool = True
    ) -> None:
        self._change(
            "record a failed attempt",
            "SET attempts = attempts + %s, last_error = %s, next_attempt_at = %s"
            " WHERE id = %s AND state = %s",
            (int(counted), error, next_attempt_at, row_id, PENDING),
        )

    def expire(self, now: float, max_age: float, min_attempts: int = 0) -> list[Entry]:
        """Dead-letter pending requests older than max_age with at least
        `min_attempts` attempts; return them."""
        args = (PENDING, now - max_age, min_attempts)
        where = "state = %s AND age_from < %s AND attempts >= %s"
        if not self._select(f"{where} LIMIT 1", args):
            return []

        def dead_letter(db: psycopg.Connection[tuple[Any, ...]]) -> list[Entry]:
            rows = db.execute(
                f"UPDATE {_TABLE} SET state = %s, finished_at = %s, last_error = CASE"  # noqa: S608
                " WHEN last_error = '' THEN 'never attempted' ELSE last_error END"
                f" WHERE {where} RETURNING {_COLUMNS}",
                (DEAD, now, *args),
            ).fetchall()
            return sorted((_entry(row) for row in rows), key=lambda e: e.id)

        return self._run("dead-letter old requests", dead_letter, write=True)

    # --- for the operator ---------------------------------------------------------

    def get(self, row_id: int) -> Entry | None:
        found = self._select("id = %s", (row_id,))
        return found[0] if found else None

    def entries(self, state: str | None = None, limit: int = 100) -> list[Entry]:
        where, args = ("state = %s", (state,)) if state else ("TRUE", ())
        return self._select(f"{where} ORDER BY id DESC LIMIT %s", (*args, limit))[::-1]

    def retry(self, row_id: int, now: float) -> Entry:
        """Send a dead (or pending) request again at once, with a fresh max_age."""

        def again(db: psycopg.Connection[tuple[Any, ...]]) -> tuple[int, str | None]:
            changed = db.execute(
                f"UPDATE {_TABLE} SET state = %s, attempts = 0, next_attempt_at = %s,"  # noqa: S608
                " age_from = %s, finished_at = NULL WHERE id = %s AND state IN (%s, %s)",
                (PENDING, now, now, row_id, DEAD, PENDING),
            ).rowcount
            row = db.execute(f"SELECT state FROM {_TABLE} WHERE id = %s", (row_id,)).fetchone()  # noqa: S608
            return changed, None if row is None else str(row[0])

        changed, state = self._run("retry the request", again, write=True)
        if state is None:
            raise OutboxError(f"there is no request {row_id} in the outbox")
        if not changed:
            raise OutboxError(f"request {row_id} is {state}; only dead or pending ones retry")
        updated = self.get(row_id)
        assert updated is not None
        return updated

    def retry_dead(self, now: float) -> int:
        return self._change(
            "retry dead requests",
            "SET state = %s, attempts = 0, next_attempt_at = %s, age_from = %s,"
            " finished_at = NULL WHERE state = %s",
            (PENDING, now, now, DEAD),
        )

    def purge(self, before: float) -> int:
        return self._delete(
            "purge old requests", "state != %s AND created_at < %s", (PENDING, before)
        )

    def prune_delivered(self, before: float) -> int:
        return self._delete(
            "prune delivered requests",
            "state IN (%s, %s) AND finished_at < %s",
            (DELIVERED, DUPLICATE, before),
        )

    def has_channel(self, channel_id: str) -> bool:
        query = f"SELECT 1 FROM {_TABLE} WHERE channel_id = %s LIMIT 1"  # noqa: S608
        return self._one(query, (channel_id,)) is not None

    def counts(self) -> dict[str, int]:
        query = f"SELECT state, COUNT(*) FROM {_TABLE} GROUP BY state"  # noqa: S608
        found = dict(self._run("read the outbox", lambda db: db.execute(query).fetchall()))
        return {state: int(found.get(state, 0)) for state in STATES}

    # --- plumbing -------------------------------------------------------------

    def _select(self, where: str, args: Sequence[object]) -> list[Entry]:
        query = f"SELECT {_COLUMNS} FROM {_TABLE} WHERE {where}"  # noqa: S608 - fixed text
        rows = self._run("read the outbox", lambda db: db.execute(query, args).fetchall())
        return [_entry(row) for row in rows]

    def _one(self, query: str, args: Sequence[object]) -> tuple[Any, ...] | None:
        return self._run("read the outbox", lambda db: db.execute(query, args).fetchone())

    def _change(self, what: str, assignments: str, args: Sequence[object]) -> int:
        query = f"UPDATE {_TABLE} {assignments}"
        return self._run(what, lambda db: db.execute(query, args).rowcount, write=True)

    def _delete(self, what: str, where: str, args: Sequence[object]) -> int:
        query = f"DELETE FROM {_TABLE} WHERE {where}"  # noqa: S608 - fixed text
        return self._run(what, lambda db: db.execute(query, args).rowcount, write=True)

    def _run(
        self,
        what: str,
        work: Callable[[psycopg.Connection[tuple[Any, ...]]], T],
        *,
        write: bool = False,
    ) -> T:
        """`work` on the connection (in one transaction if `write`); every
        failure becomes one OutboxError. A connection the server dropped since
        the last use (a restart) is made again once."""
        psycopg = psycopg_module()
        with self._locked():
            for fresh in (self._db is None, True):
                db = self._connection()
                try:
                    if not write:
                        return work(db)
                    with db.transaction():
                        return work(db)
                except psycopg.OperationalError as exc:
                    if db.broken or db.closed:
                        self._drop()
                        if not fresh:
                            continue
                    raise OutboxError(f"cannot {what} in {self.path}: {first_line(exc)}") from None
                except (psycopg.Error, UnicodeError, ValueError) as exc:
                    raise OutboxError(f"cannot {what} in {self.path}: {first_line(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._closed:
            raise OutboxError(f"the outbox {self.path} is closed")
        if self._db is None:
            self._db = connect(self._url, self._password, self.path)
        return self._db

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with suppress(Exception):
                db.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection's lock, waited for at most LOCK_TIMEOUT: a statement
        stuck on an unreachable server must not hang shutdown or recovery."""
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise OutboxError(
                f"the outbox {self.path} is busy: a statement has not finished within"
                f" {LOCK_TIMEOUT:g} s (is the database server reachable?)"
            )
        try:
            yield
        finally:
            self._lock.release()


def _entry(row: tuple[Any, ...]) -> Entry:
    entry = Entry(*row[:-1])
    return replace(entry, id=int(entry.id), context=tuple(_facts(row[-1]).items()))
