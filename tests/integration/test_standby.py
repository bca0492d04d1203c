"""Two instances for one Asterisk and app name with a shared PostgreSQL: one
holds the lock and the event socket, the other stands by and takes over."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from harness import AppProcess, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import (
    CONTINUED,
    HUNGUP_BY_APP,
    STASIS_FAILED,
    FakeAsterisk,
    FakeCall,
)
from stasis_dnd.testing.postgres import TempPostgres

PG_PASSWORD = "pg-Secret-1618"
PROMPT = "sound:custom/IVR_DND_OPERATORS"
READBACK = "sound:custom/IVR_DND_READBACK"


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    with TempPostgres(password=PG_PASSWORD) as server:
        yield server


def instance(folder: Path, fake: FakeAsterisk, crm: CrmEmulator, pg: TempPostgres) -> AppProcess:
    folder.mkdir()
    extra = f"url = {pg.url}\npassword = {PG_PASSWORD}\n"
    return AppProcess(write_config(folder, fake, crm, extra))


def confirm_now(call: FakeCall, fake: FakeAsterisk) -> None:
    heard = len(call.media_heard())
    call.press("1")
    fake.wait_until(lambda: READBACK in " ".join(call.media_heard()[heard:]), 10, "the read-back")
    call.press("1")


def prompts(call: FakeCall, times: int) -> Callable[[], bool]:
    """The caller has heard the menu prompt `times` times."""
    return lambda: call.media_heard().count(PROMPT) >= times


def holder_pids(pg: TempPostgres) -> list[int]:
    """The database sessions that hold an advisory lock now."""
    with psycopg.connect(pg.url_with_password(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        ).fetchall()
    return [int(row[0]) for row in rows]


@pytest.fixture
def pair(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator, pg: TempPostgres
) -> Iterator[tuple[AppProcess, AppProcess]]:
    """Two instances for the fake Asterisk (not started); any left running are stopped."""
    apps = (instance(tmp_path / "a", fake, crm, pg), instance(tmp_path / "b", fake, crm, pg))
    try:
        yield apps
    finally:
        for app in apps:
            if app.process is not None:
                app.stop()


def start_holder_and_standby(
    pair: tuple[AppProcess, AppProcess], fake: FakeAsterisk
) -> tuple[AppProcess, AppProcess]:
    first, second = pair
    first.start().wait_log("event=holder")
    fake.wait_connected(20)
    second.start().wait_log("event=standby")
    assert fake.counters()["ws_connections"] == 1  # the standby did not connect
    return first, second


def test_the_standby_serves_the_parked_callers_of_a_killed_holder(
    fake: FakeAsterisk, crm: CrmEmulator, pair: tuple[AppProcess, AppProcess]
) -> None:
    first, second = start_holder_and_standby(pair, fake)
    calls = [fake.place_call(f"+7900123000{n}", script=[]) for n in (1, 2)]
    for call in calls:
        fake.wait_until(prompts(call, 1), 10, "the prompt")
    killed = time.monotonic()
    first.kill()
    for call in calls:
        fake.wait_until(prompts(call, 2), 30, "the prompt again")
    takeover = time.monotonic() - killed
    print(f"takeover: holder killed -> both parked callers hear the menu again: {takeover:.2f} s")
    second.wait_log("event=holder")
    second.wait_log("event=recovered", count=2)
    confirm_now(calls[0], fake)
    assert calls[0].wait_done(20) == HUNGUP_BY_APP
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001230001"])
    assert fake.counters()["ws_connections"] == 2
    assert fake.counters().get("ws_replaced", 0) == 0  # never two sockets at once
    assert second.stop() == 0
    assert PG_PASSWORD not in first.text() + second.text()


def test_a_holder_that_loses_its_database_session_closes_before_the_standby_connects(
    fake: FakeAsterisk, crm: CrmEmulator, pg: TempPostgres, pair: tuple[AppProcess, AppProcess]
) -> None:
    first, second = start_holder_and_standby(pair, fake)
    parked = fake.place_call("+79001230003", script=[])
    fake.wait_until(prompts(parked, 1), 10, "the prompt")
    (holder,) = holder_pids(pg)
    with psycopg.connect(pg.url_with_password(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (holder,))
    first.wait_log("event=lock_lost")
    # The caller in progress goes back to the dialplan, not into silence.
    assert parked.wait_done(20) == CONTINUED
    second.wait_log("event=holder")
    fake.wait_until(lambda: fake.counters()["ws_connections"] == 2, 20, "the new holder")
    assert fake.counters().get("ws_replaced", 0) == 0  # the first had closed already
    assert "event=app_replaced" not in first.text() + second.text()
    # The first waits for the lock again, not for the app name.
    first.wait_log("event=standby")
    later = fake.place_call("+79001230004", script=[])
    fake.wait_until(prompts(later, 1), 10, "the new holder's prompt")
    confirm_now(later, fake)
    assert later.wait_done(20) == HUNGUP_BY_APP
    assert fake.counters()["ws_connections"] == 2
    assert second.stop() == 0
    assert first.stop() == 0


def test_with_the_database_down_callers_get_the_dialplan_until_it_returns(
    fake: FakeAsterisk, crm: CrmEmulator, pg: TempPostgres, pair: tuple[AppProcess, AppProcess]
) -> None:
    first, second = start_holder_and_standby(pair, fake)
    parked = fake.place_call("+79001230005", script=[])
    fake.wait_until(prompts(parked, 1), 10, "the prompt")
    pg.stop()
    try:
        first.wait_log("event=lock_lost")
        assert parked.wait_done(20) == CONTINUED  # handed back, not left in silence
        fake.wait_until(lambda: not fake.connected, 10, "the socket closed")
        second.wait_log("event=lock_db_unreachable")
        # Nobody holds the app: Asterisk's Stasis() fails and the dialplan serves the caller.
        assert fake.place_call("+79001230006", script=[]).wait_done(20) == STASIS_FAILED
        assert fake.counters()["ws_connections"] == 1
    finally:
        pg.start()
    fake.wait_connected(30)
    served = fake.place_call("+79001230007", script=[])
    fake.wait_until(prompts(served, 1), 10, "the prompt once the database is back")
    assert fake.counters().get("ws_replaced", 0) == 0
    assert second.stop() == 0
    assert first.stop() == 0
