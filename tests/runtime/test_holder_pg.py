"""The advisory lock on a real PostgreSQL (`runtime.holder.PgLockSession`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from stasis_dnd.runtime.holder import PgLockSession, lock_key
from stasis_dnd.testing.postgres import TempPostgres

PASSWORD = "lock-Secret-2718"
KEY = lock_key("http://127.0.0.1:8088", "stasis-dnd")
# Each test its own key: a closed session's lock is freed only once its backend exits.
OTHER_KEY = lock_key("http://127.0.0.1:8089", "stasis-dnd")


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    with TempPostgres(password=PASSWORD) as server:
        yield server


def test_one_session_holds_the_lock_until_it_closes(pg: TempPostgres) -> None:
    first = PgLockSession(pg.url, PASSWORD, KEY)
    second = PgLockSession(pg.url, PASSWORD, KEY)
    other_app = PgLockSession(pg.url, PASSWORD, lock_key("http://127.0.0.1:8088", "other"))
    try:
        assert first.try_lock()
        assert not second.try_lock()
        assert other_app.try_lock()  # another app name is not blocked
        first.check()
        first.close()
        # The server frees the lock once the closed session's backend has exited.
        assert _eventually(second.try_lock)
    finally:
        for session in (first, second, other_app):
            session.close()


def test_a_terminated_backend_fails_the_check_and_frees_the_lock(pg: TempPostgres) -> None:
    holder = PgLockSession(pg.url, PASSWORD, OTHER_KEY)
    standby = PgLockSession(pg.url, PASSWORD, OTHER_KEY)
    try:
        assert holder.try_lock()
        with psycopg.connect(pg.url_with_password(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'stasis-dnd lock' AND pid <> pg_backend_pid()"
                " AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
            )
        with pytest.raises(psycopg.OperationalError):
            holder.check()
        assert _eventually(standby.try_lock)
    finally:
        holder.close()
        standby.close()


def test_the_server_ends_an_idle_lock_session(pg: TempPostgres) -> None:
    session = PgLockSession(pg.url, PASSWORD, KEY)
    try:
        with psycopg.connect(pg.url_with_password(), autocommit=True) as admin:
            row = admin.execute(
                "SELECT setting FROM pg_settings WHERE name = 'server_version_num'"
            ).fetchone()
            assert row is not None and int(row[0]) >= 140000
        shown = session._conn.execute("SHOW idle_session_timeout").fetchone()
        assert shown == ("3s",)
        assert session._conn.execute("SHOW statement_timeout").fetchone() == ("1s",)
    finally:
        session.close()


def test_a_wrong_password_names_no_password(pg: TempPostgres) -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        PgLockSession(pg.url, "wrong-Secret-1", KEY)
    assert "wrong-Secret-1" not in str(caught.value)
    assert PASSWORD not in str(caught.value)


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
