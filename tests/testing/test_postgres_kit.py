"""The throwaway PostgreSQL of the outbox and standby tests: a real server on
loopback that keeps its data across a restart and is gone after."""

from __future__ import annotations

import psycopg
import pytest

from stasis_dnd.testing.postgres import TempPostgres


def test_a_cluster_serves_keeps_its_data_over_a_restart_and_is_removed() -> None:
    with TempPostgres(password="pw-9x") as pg:
        with psycopg.connect(pg.url_with_password(), autocommit=True) as db:
            db.execute("CREATE TABLE t (n int)")
            db.execute("INSERT INTO t VALUES (7)")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.url, connect_timeout=5).close()  # no password: refused
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.url_with_password(), connect_timeout=5).close()
        pg.start()
        with psycopg.connect(pg.url_with_password()) as db:
            assert db.execute("SELECT n FROM t").fetchall() == [(7,)]
        folder = pg.folder
    assert not folder.exists()
