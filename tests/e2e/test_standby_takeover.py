"""A hot standby on a real Asterisk 22: two instances for one app name share
a PostgreSQL database; the one holding the lock is killed with a caller
parked in its menu, and the standby takes the caller over and files the 1."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from app_kit import CALL_TIMEOUT, PROMPT, Observer, RunningApp, new_app_name, write_config
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.postgres import TempPostgres

pytestmark = pytest.mark.e2e

PG_PASSWORD = "pg-Secret-3141"


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    with TempPostgres(password=PG_PASSWORD) as server:
        yield server


def launch(
    folder: Path, asterisk: Ari, emulator: CrmEmulator, pg: TempPostgres, name: str
) -> RunningApp:
    """`stasis-dnd run` with the shared database; returns before it connects."""
    folder.mkdir()
    config = write_config(folder, asterisk, emulator, name)
    with config.open("a") as out:  # [outbox] is the last section
        out.write(f"url = {pg.url}\npassword = {PG_PASSWORD}\n")
    log = folder / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stasis_dnd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return RunningApp(name, process, log, config)


def test_the_standby_serves_a_parked_caller_after_the_holder_is_killed(
    asterisk: Ari,
    emulator: CrmEmulator,
    pg: TempPostgres,
    tmp_path: Path,
    *,
    observer: Observer,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    name = new_app_name()
    first = launch(tmp_path / "first", asterisk, emulator, pg, name)
    running = [first]
    try:
        first.wait_log("event=ari_connected", timeout=20)
        second = launch(tmp_path / "second", asterisk, emulator, pg, name)
        running.append(second)
        second.wait_log("event=standby", timeout=20)
        go = f"E2E_GO_{uuid.uuid4().hex[:8]}"
        caller = cleanup_channels(
            asterisk.originate_caller(
                f"press1if{go}",
                number="+79005550401",
                variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"},
            )
        )
        observer.wait_heard(caller, PROMPT)
        killed = time.monotonic()
        first.process.kill()
        first.process.wait(timeout=10)
        second.wait_log(f"event=recovered channel={caller}", timeout=30)
        observer.wait_heard(caller, PROMPT, timeout=30, times=2)  # the menu starts again
        takeover = time.monotonic() - killed
        print(f"takeover on Asterisk 22: holder killed -> the menu again: {takeover:.2f} s")
        asterisk.set_global(go, "1")
        assert emulator.wait_for(
            lambda c: c.delivered_phones() == ["+79005550401"], timeout=CALL_TIMEOUT
        ), (observer.heard(caller), second.log_text())
        assert asterisk.wait_gone(caller, CALL_TIMEOUT)
        second.wait_log(f"event=call channel={caller} ")
        assert "outcome=callback" in second.call_line(caller)
        assert "event=app_replaced" not in first.log_text() + second.log_text()
        assert asterisk.app_channels(name) == []
    finally:
        for app in running:
            if app.process.poll() is None:
                assert app.stop() == 0, app.log_text()
    text = first.log_text() + second.log_text()
    assert PG_PASSWORD not in text and "Traceback" not in text, text
