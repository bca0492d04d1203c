"""`stasis-dnd outbox migrate --to URL`: a SQLite outbox's pending, dead and
recently delivered requests copied into PostgreSQL, once however often it
runs, the file left as it was."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pytest

from stasis_dnd.callbacks.outbox import DEAD, DELIVERED, DUPLICATE, PENDING, Entry, Outbox
from stasis_dnd.callbacks.store import open_outbox
from stasis_dnd.cli.outbox import add_outbox_commands, run_outbox_command
from stasis_dnd.settings import OutboxSettings

DAY = 86400.0
WINDOW = 1800.0
A, B, C, D, E = (f"+7900000000{n}" for n in range(1, 6))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stasis-dnd")
    add_outbox_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["outbox", *argv])


@pytest.fixture
def settings(tmp_path: Path, postgres_outbox: OutboxSettings) -> OutboxSettings:
    """The config before the move: the SQLite file, the database's password."""
    return OutboxSettings(
        path=str(tmp_path / "outbox.sqlite3"),
        password=postgres_outbox.password,
        dedupe_window=WINDOW,
    )


def fill(path: str) -> dict[str, str]:
    """A SQLite outbox with a request in each state; request id by what it is."""
    box = Outbox.open(path)
    now = time.time()
    old = box.add(A, "c1", "old-delivered", now - 10 * DAY, WINDOW)
    box.mark_delivered(old.id, now - 10 * DAY)
    recent = box.add(B, "c2", "recent-delivered", now - 60, WINDOW)
    box.mark_delivered(recent.id, now - 50)
    box.add(B, "c3", "repeat", now - 30, WINDOW)  # a duplicate of the recent one
    dead = box.add(C, "c4", "dead", now - 3 * DAY)
    box.mark_failed(dead.id, "failed: HTTP 500", now)
    box.expire(now, max_age=DAY)
    waiting = box.add(D, "c5", "pending", now - 120, caller_id=E, context=(("queue", "998"),))
    box.mark_failed(waiting.id, "unavailable: Connection refused", now + 30, counted=False)
    box.close()
    return {"pending": "pending", "dead": "dead", "recent": "recent-delivered"}


def rows(path: str) -> list[Entry]:
    box = Outbox.open(path)
    try:
        return box.entries(limit=1000)
    finally:
        box.close()


def test_migrate_copies_pending_dead_and_recent_requests_once(
    settings: OutboxSettings, postgres_outbox: OutboxSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(settings.path)
    before = rows(settings.path)
    assert run_outbox_command(parse("migrate", "--to", postgres_outbox.url), settings) == 0
    out = capsys.readouterr().out
    assert "1 pending, 1 dead and 1 recently delivered request(s)" in out
    assert "were there already" not in out
    target = open_outbox(postgres_outbox)
    copied = {e.request_id: e for e in target.entries()}
    assert sorted(copied) == ["dead", "pending", "recent-delivered"]
    waiting = copied["pending"]
    source = Outbox.open(settings.path)
    [original] = source.entries(PENDING)
    source.close()
    # As it was: when it is next due, its caller id, facts, error and times.
    assert dataclasses.replace(waiting, id=original.id) == original
    assert (copied["dead"].state, copied["dead"].last_error) == (DEAD, "failed: HTTP 500")
    assert copied["recent-delivered"].state == DELIVERED
    # The caller who calls again right after the move is still a repeat.
    again = target.add(B, "c9", "after-move", time.time(), WINDOW)
    assert (again.state, again.duplicate_of) == (DUPLICATE, copied["recent-delivered"].id)
    # Run again: nothing is copied twice.
    assert run_outbox_command(parse("migrate", "--to", postgres_outbox.url), settings) == 0
    out = capsys.readouterr().out
    assert "0 pending, 0 dead and 0 recently delivered request(s)" in out
    assert "3 request(s) were there already and were left alone." in out
    assert target.counts() == {PENDING: 1, DELIVERED: 1, DEAD: 1, DUPLICATE: 1}
    target.close()
    assert rows(settings.path) == before  # the file is left as it was


def test_migrate_without_a_sqlite_outbox_says_so(
    settings: OutboxSettings, postgres_outbox: OutboxSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_outbox_command(parse("migrate", "--to", postgres_outbox.url), settings) == 1
    assert capsys.readouterr().err == f"stasis-dnd: there is no outbox at {settings.path}\n"


def test_migrate_to_a_database_that_refuses_the_login_is_one_line(
    settings: OutboxSettings, postgres_outbox: OutboxSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(settings.path)
    wrong = dataclasses.replace(settings, password="wrong-pw")
    assert run_outbox_command(parse("migrate", "--to", postgres_outbox.url), wrong) == 1
    err = capsys.readouterr().err
    assert err.startswith("stasis-dnd: the database server refused the login for ")
    assert err.count("\n") == 1 and "wrong-pw" not in err


def test_migrate_needs_a_postgresql_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("migrate", "--to", "mysql://db/calls")
    assert "expected a postgresql://" in capsys.readouterr().err
