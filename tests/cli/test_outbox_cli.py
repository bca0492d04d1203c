"""`stasis-dnd outbox list|retry|purge`, through the functions cli.py calls,
on the SQLite file and on a PostgreSQL database (`[outbox] url`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stasis_dnd.callbacks.outbox import DEAD, PENDING
from stasis_dnd.callbacks.store import OutboxStore, open_outbox
from stasis_dnd.cli.outbox import add_outbox_commands, owner_to_become, run_outbox_command
from stasis_dnd.settings import OutboxSettings

DAY = 86400.0


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stasis-dnd")
    add_outbox_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["outbox", *argv])


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> OutboxSettings:
    sqlite = OutboxSettings(path=str(tmp_path / "outbox.sqlite3"))
    if request.param == "sqlite":
        return sqlite
    shared: OutboxSettings = request.getfixturevalue("postgres_outbox")
    return dataclasses.replace(shared, path=sqlite.path)


# What only the SQLite file has: a file that may be missing, unreadable, root's.
sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


@pytest.fixture
def run(
    settings: OutboxSettings, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    def run_command(*argv: str) -> tuple[int, str, str]:
        status = run_outbox_command(parse(*argv), settings)
        out, err = capsys.readouterr()
        return status, out, err

    return run_command


@pytest.fixture
def box(settings: OutboxSettings) -> Iterator[OutboxStore]:
    """An outbox with one request in each state; the service would have made it."""
    outbox = open_outbox(settings)
    now = time.time()
    delivered = outbox.add("+79000000001", "1700000000.1", "r1", now - 10 * DAY, 1800)
    outbox.mark_delivered(delivered.id, now - 10 * DAY + 2)
    outbox.add("+79000000001", "1700000000.2", "r2", now - 10 * DAY + 60, 1800)  # repeat
    dead = outbox.add("+79000000003", "1700000000.3", "r3", now - 9 * DAY)
    outbox.mark_failed(dead.id, "unavailable: Connection refused", now)
    outbox.expire(now, max_age=DAY)
    old = outbox.add("+79000000004", "1700000000.4", "r4", now - 8 * DAY)  # pending, old
    outbox.mark_failed(old.id, "failed: HTTP 500", now + 600)  # waits its own back-off
    outbox.add("+79000000005\x1b[2J", "1700000000.5", "r5", now)  # a hostile caller id
    yield outbox
    outbox.close()


def test_list_shows_a_table_of_every_request(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    status, out, _ = run("list")
    assert status == 0
    lines = out.splitlines()
    # No request has a caller id of its own: no column for it.
    assert lines[0].split() == ["ID", "STATE", "CREATED", "NUMBER", "CHANNEL", "TRIES", "NOTE"]
    assert [line.split()[1] for line in lines[1:6]] == [
        "delivered",
        "duplicate",
        "dead",
        "pending",
        "pending",
    ]
    assert "repeats request 1" in lines[2]
    assert "gave up: unavailable: Connection refused" in lines[3]
    waiting = box.entries(PENDING)[0]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(waiting.next_attempt_at))
    tries, note = lines[4].split()[6], " ".join(lines[4].split()[7:])
    assert (tries, note) == ("1", f"next try {when}: failed: HTTP 500")
    assert lines[5].split()[6:] == ["0"]  # the new one: not tried yet, no note
    assert "+79000000005?[2J" in out
    assert "\x1b" not in out
    assert lines[-1] == "pending 2, delivered 1, dead 1, duplicate 1"


def test_list_shows_the_caller_id_of_requests_that_have_one(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    now = time.time()
    box.add("+79000000006", "1700000000.6", "r6", now, caller_id="+79000000007")
    box.add("+79000000008", "1700000000.8", "r8", now, caller_id="+7900\x1b[2J")
    _, out, _ = run("list")
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "CREATED",
        "NUMBER",
        "CALLER_ID",
        "CHANNEL",
        "TRIES",
        "NOTE",
    ]
    # Shown in full, as the number to call is: the operator may need either.
    assert lines[6].split()[4:7] == ["+79000000006", "+79000000007", "1700000000.6"]
    assert lines[7].split()[4:6] == ["+79000000008", "+7900?[2J"]
    assert lines[1].split()[4:6] == ["+79000000001", "(same)"]  # called back at itself
    assert "\x1b" not in out


def test_list_by_state(box: OutboxStore, run: Callable[..., tuple[int, str, str]]) -> None:
    _, out, _ = run("list", "--state", "dead")
    rows = out.strip().splitlines()[1:-2]
    assert len(rows) == 1 and "+79000000003" in rows[0]
    _, out, _ = run("list", "--state", "delivered", "--limit", "5")
    assert "delivered" in out.splitlines()[1]


@sqlite_only
def test_list_of_a_missing_outbox_creates_nothing(
    settings: OutboxSettings, run: Callable[..., tuple[int, str, str]]
) -> None:
    status, out, _ = run("list", "--state", "pending")
    assert status == 0
    assert "does not exist yet" in out
    assert not Path(settings.path).exists()


def test_retry_one_dead_request(box: OutboxStore, run: Callable[..., tuple[int, str, str]]) -> None:
    [dead] = box.entries(DEAD)
    status, out, _ = run("retry", str(dead.id))
    assert status == 0
    assert f"Request {dead.id} (+79000000003) will be sent again" in out
    again = box.get(dead.id)
    assert again is not None and again.state == PENDING
    assert again.age_from > dead.created_at  # max_age counts from the retry


def test_retry_all_dead(box: OutboxStore, run: Callable[..., tuple[int, str, str]]) -> None:
    status, out, _ = run("retry", "--dead")
    assert (status, out.split()[0]) == (0, "1")
    assert box.entries(DEAD) == []


def test_retry_of_a_delivered_request_is_refused_clearly(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    status, _, err = run("retry", "1")
    assert status == 1
    assert err == "stasis-dnd: request 1 is delivered; only dead or pending ones retry\n"
    status, _, err = run("retry", "77")
    assert (status, err) == (1, "stasis-dnd: there is no request 77 in the outbox\n")


def test_retry_needs_an_id_or_dead(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("retry")
    with pytest.raises(SystemExit):
        parse("retry", "3", "--dead")


def test_purge_older_than_keeps_pending_and_recent(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    status, out, _ = run("purge", "--older-than", "7d")
    assert status == 0
    assert out.startswith("Deleted 3 finished request(s)")
    assert [e.phone[:12] for e in box.entries()] == ["+79000000004", "+79000000005"]
    assert {e.state for e in box.entries()} == {PENDING}


def test_purge_needs_a_valid_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("purge", "--older-than", "a week")
    assert "expected a duration such as 90s, 30m, 24h or 7d" in capsys.readouterr().err
    assert parse("purge", "--older-than", "12h").older_than == 12 * 3600


def test_config_option_on_every_action() -> None:
    for argv in (["list"], ["retry", "--dead"], ["purge", "--older-than", "1d"]):
        assert parse(*argv, "--config", "/tmp/x.ini").config == "/tmp/x.ini"


@sqlite_only
def test_unreadable_outbox_is_one_line(
    settings: OutboxSettings, run: Callable[..., tuple[int, str, str]]
) -> None:
    Path(settings.path).write_bytes(b"garbage" * 200)
    status, _, err = run("list")
    assert status == 1
    assert err.startswith(f"stasis-dnd: cannot open the outbox {settings.path}: ")
    assert err.count("\n") == 1


def test_root_works_on_the_outbox_as_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"")
    service = os.stat_result((0o100640, 0, 0, 1, 998, 997, 0, 0, 0, 0))
    rooted = os.stat_result((0o100640, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    assert owner_to_become(service, euid=0) == (998, 997)
    assert owner_to_become(rooted, euid=0) is None  # root's own outbox: stay root
    assert owner_to_become(service, euid=998) is None  # not root: nothing to drop


@sqlite_only
def test_root_drops_to_the_owner_before_opening(
    box: OutboxStore,
    settings: OutboxSettings,
    run: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_stat = os.stat

    def stat(path: Any, **options: Any) -> os.stat_result:
        result = real_stat(path, **options)
        if str(path) == settings.path:
            return os.stat_result((result.st_mode, 0, 0, 1, 998, 997, 0, 0, 0, 0))
        return result

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "setgroups", lambda groups: calls.append(("setgroups", groups)))
    monkeypatch.setattr(os, "setgid", lambda gid: calls.append(("setgid", gid)))
    monkeypatch.setattr(os, "setuid", lambda uid: calls.append(("setuid", uid)))
    status, _, _ = run("list")
    assert status == 0
    # Groups and group first: after setuid, root's right to change them is gone.
    assert calls == [("setgroups", []), ("setgid", 997), ("setuid", 998)]


def test_list_shows_queue_and_waited_and_filters_by_queue(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    now = time.time()
    sales = (("queue", "sales"), ("waited_seconds", "42"), ("reason", "TIMEOUT"))
    box.add("+79000000006", "1700000000.6", "r6", now, context=sales)
    box.add("+79000000007", "1700000000.7", "r7", now, context=(("queue", "sup\x1b[2J"),))
    _, out, _ = run("list")
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "CREATED",
        "NUMBER",
        "QUEUE",
        "WAITED",
        "CHANNEL",
        "TRIES",
        "NOTE",
    ]
    assert lines[6].split()[4:7] == ["+79000000006", "sales", "42s"]
    assert lines[7].split()[4:7] == ["+79000000007", "sup?[2J", "-"]
    assert lines[1].split()[4:6] == ["+79000000001", "-"]  # stored without facts
    assert "\x1b" not in out
    _, out, _ = run("list", "--queue", "sales")
    rows = out.strip().splitlines()[1:-2]
    assert len(rows) == 1 and "+79000000006" in rows[0]
    status, out, _ = run("list", "--queue", "nobody")
    assert (status, out.split("(")[0]) == (0, "No stored requests from queue nobody ")


def test_list_shows_the_profile_and_filters_by_it(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    now = time.time()
    box.add("+79000000006", "1700000000.6", "r6", now, context=(("profile", "sales"),))
    box.add("+79000000007", "1700000000.7", "r7", now, context=(("profile", "default"),))
    _, out, _ = run("list")
    lines = out.splitlines()
    assert lines[0].split()[4:6] == ["PROFILE", "CHANNEL"]
    assert lines[6].split()[4:6] == ["+79000000006", "sales"]
    assert lines[1].split()[4:6] == ["+79000000001", "default"]  # stored before profiles
    _, out, _ = run("list", "--profile", "Sales")
    rows = out.strip().splitlines()[1:-2]
    assert len(rows) == 1 and "+79000000006" in rows[0]
    _, out, _ = run("list", "--profile", "default")
    assert "+79000000007" in out and "+79000000001" in out and "+79000000006" not in out
    status, out, _ = run("list", "--profile", "vip")
    assert (status, out.split("(")[0]) == (0, "No stored requests of profile vip ")


def test_a_single_profile_set_up_shows_no_profile_column(
    box: OutboxStore, run: Callable[..., tuple[int, str, str]]
) -> None:
    box.add("+79000000007", "1700000000.7", "r7", time.time(), context=(("profile", "default"),))
    _, out, _ = run("list")
    assert "PROFILE" not in out


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_root_stays_root_on_a_database_outbox(
    box: OutboxStore,
    settings: OutboxSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "setuid", calls.append)
    monkeypatch.setattr(os, "setgid", calls.append)
    # No file of its own: `path` names none, yet the database is listed.
    shared = dataclasses.replace(settings, path="/nonexistent/outbox.sqlite3")
    assert run_outbox_command(parse("list"), shared) == 0
    assert calls == []
    assert "+79000000004" in capsys.readouterr().out


def test_a_database_that_refuses_the_login_is_one_line(
    postgres_outbox: OutboxSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dataclasses.replace(postgres_outbox, password="wrong-pw")
    assert run_outbox_command(parse("list"), settings) == 1
    err = capsys.readouterr().err
    assert err.startswith("stasis-dnd: the database server refused the login for postgresql://")
    assert err.count("\n") == 1 and "wrong-pw" not in err
