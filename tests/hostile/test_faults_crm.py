"""The CRM and the outbox misbehaving under `stasis-dnd run`: callers are
served as usual and promised a callback only when it is stored or delivered;
the request reaches the CRM once it is back, under one request id."""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_kit import (
    CRM_PASSWORD,
    GOODBYE,
    PROMPT,
    SORRY,
    App,
    outbox_rows,
    readback,
    requested,
    run_cli,
    wait,
    write_config,
)

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import (
    HUGE,
    INVALID_JSON,
    LOGIN_PAGE_REPLY,
    SERVER_ERROR,
    error,
    slow,
)
from stasis_dnd.testing.fake_asterisk import HUNGUP_BY_APP, FakeAsterisk, FakeCall, press

Launch = Callable[..., App]


@dataclass(frozen=True)
class CrmFault:
    name: str
    start: Callable[[CrmEmulator], None]
    # What the app's log says about it.
    logged: str
    # Bad credentials pause delivery for a minute: the admin fixes them and restarts.
    needs_restart: bool = False
    # The CRM failed on this request alone: it backs off on its own (up to 5 s
    # at first, then 10, 20, ...) while the others go on; the operator may send it now.
    alone: bool = False


def _rotate_password(crm: CrmEmulator) -> None:
    crm.password = "rotated-by-the-crm-admin"


FAULTS = [
    CrmFault("down", lambda crm: crm.outage(), "error='unavailable: Connection refused'"),
    CrmFault(
        "slow",
        lambda crm: crm.script(slow(2.5)),
        "error='failed: no answer in time'",
        alone=True,
    ),
    CrmFault("500", lambda crm: crm.script(SERVER_ERROR), "error='failed: HTTP 500'", alone=True),
    CrmFault("401", _rotate_password, "event=crm_bad_credentials", needs_restart=True),
    CrmFault(
        "login_page",
        lambda crm: crm.script(LOGIN_PAGE_REPLY),
        "the CRM answered with its login page",
        needs_restart=True,
    ),
    CrmFault(
        "status_error",
        lambda crm: crm.script(error("java.lang.NullPointerException: no such queue")),
        "error='refused: java.lang.NullPointerException: no such queue'",
        alone=True,
    ),
    CrmFault(
        "invalid_json", lambda crm: crm.script(INVALID_JSON), "answer is not JSON", alone=True
    ),
    CrmFault("huge", lambda crm: crm.script(HUGE), "answer larger than 65536 bytes", alone=True),
]


def place_the_usual_callers(fake: FakeAsterisk, number: str) -> list[FakeCall]:
    """One caller presses 1, one stays silent, one presses a wrong key."""
    return [
        fake.place_call(number, script=press("1", after=0.1)),
        fake.place_call("+79005550001", script=[]),
        fake.place_call("+79005550002", script=press("5", after=0.1)),
    ]


def assert_served_as_usual(calls: list[FakeCall]) -> None:
    pressed, silent, wrong = calls
    for call in calls:
        assert call.wait_done(20) == HUNGUP_BY_APP
    # Stored in the outbox, so the promise is kept whatever the CRM does.
    assert pressed.media_heard() == requested(pressed.number)
    assert silent.media_heard() == [PROMPT, SORRY, GOODBYE]
    assert wrong.media_heard() == [PROMPT, SORRY, GOODBYE]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_misbehaving_crm_neither_disturbs_callers_nor_loses_the_request(
    fault: CrmFault, fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake, crm)
    outbox = tmp_path / "outbox.sqlite3"
    app = launch(config, label="first")
    number = "+79001234567"
    fault.start(crm)
    assert_served_as_usual(place_the_usual_callers(fake, number))
    app.wait_log(fault.logged)
    [request_id] = app.request_ids()

    if fault.needs_restart:
        # Delivery is paused: the request waits in the outbox with the reason.
        wait(
            lambda: "bad_credentials" in str(outbox_rows(outbox)[0]["last_error"]),
            10,
            lambda: f"the failed attempt recorded: {outbox_rows(outbox)}",
        )
        [row] = outbox_rows(outbox)
        assert (row["state"], row["request_id"]) == ("pending", request_id)
        assert app.count("event=crm_bad_credentials") == 1  # one line per pause
        crm.password = CRM_PASSWORD
        assert app.stop() == 0
        app = launch(config, label="second")
    elif fault.name == "down":
        crm.restore()

    def delivered_in_outbox(_: CrmEmulator) -> bool:
        return [r["state"] for r in outbox_rows(outbox)] == ["delivered"]

    if fault.alone and not crm.wait_for(delivered_in_outbox, 3):
        # It waits its own back-off; the operator sends it now (on the running
        # service's outbox file). Delivered just before that: nothing to retry.
        retried = run_cli("outbox", "retry", "1", "--config", str(config))
        assert retried.returncode == 0 or "is delivered" in retried.stderr, retried.stderr

    assert crm.wait_for(lambda c: len(c.delivered()) >= 1, 30)
    assert crm.wait_for(delivered_in_outbox, 10)
    # Every attempt carried the same request id, so the CRM can tell a repeat.
    assert {r.request_id for r in crm.requests} == {request_id}
    assert {r.param("aon") for r in crm.requests} == {number}
    delivered = collections.Counter(crm.delivered_ids())
    if fault.name == "slow":
        # The CRM did file the first one, but answered after the 1 s timeout:
        # the app cannot know and sends it again; the request id marks the repeat.
        assert delivered[request_id] in (1, 2)
    else:
        assert delivered == {request_id: 1}
    assert fake.channels_in_app() == []


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small file system of its own (root only), removed afterwards."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


@contextlib.contextmanager
def broken_outbox(how: str, path: Path) -> Iterator[None]:
    """The outbox cannot take a write: its disk is full, or another process
    (an operator's sqlite3 shell) holds it locked."""
    if how == "full":
        filler = fill(path.parent)
        try:
            yield
        finally:
            filler.unlink()
    else:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()


@pytest.mark.parametrize("how", ["full", "locked"])
def test_an_outbox_that_cannot_store_makes_no_false_promise(
    how: str, fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        outbox = disk / "outbox.sqlite3"
        config = write_config(tmp_path, fake, crm, {"outbox": {"path": outbox}})
        app = launch(config)
        with broken_outbox(how, outbox):
            crm.outage()
            unlucky = fake.place_call("+79001110001", script=press("1", after=0.1))
            assert unlucky.wait_done(20) == HUNGUP_BY_APP
            # Neither stored nor delivered: sorry, not "we will call you back".
            assert unlucky.media_heard() == [PROMPT, readback(unlucky.number), SORRY, GOODBYE]
            app.wait_log("level=CRITICAL event=callback_not_stored")
            reason = "database or disk is full" if how == "full" else "database is locked"
            assert reason in app.text()
            app.wait_log("outcome=callback_failed")
            crm.restore()
            direct = fake.place_call("+79001110002", script=press("1", after=0.1))
            assert direct.wait_done(20) == HUNGUP_BY_APP
            # The CRM took it directly: that promise is true.
            assert direct.media_heard() == requested(direct.number)
            app.wait_log("event=callback_sent_directly")
        healed = fake.place_call("+79001110003", script=press("1", after=0.1))
        assert healed.wait_done(20) == HUNGUP_BY_APP
        assert crm.wait_for(lambda c: len(c.delivered()) == 2, 20)
        assert app.stop() == 0
    assert sorted(crm.delivered_phones()) == ["+79001110002", "+79001110003"]
    assert len(set(crm.delivered_ids())) == 2
    assert crm.requests_for("+79001110001") == []


def test_a_read_only_outbox_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        config = write_config(tmp_path, None, None, {"outbox": {"path": disk / "outbox.sqlite3"}})
        made = run_cli("outbox", "list", "--config", str(config))
        assert made.returncode == 0, made.stderr
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        app = App(config).start()
        assert app.exit_status() == 1
    out = app.text()
    assert "Traceback" not in out
    [line] = out.strip().splitlines()
    assert line.startswith(f"stasis-dnd: {config}: [outbox] path: cannot open the outbox")
