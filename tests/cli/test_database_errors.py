"""`stasis-dnd run` and `check` with `[outbox] url`: a database that refuses
the login or cannot be reached is one sentence and exit status 1, as any
other config error; one that answers is reported by `check`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import FakeAsterisk
from stasis_dnd.testing.postgres import free_port

ARI_USER, ARI_PASSWORD, APP = "stasis-dnd", "ari-Secret-4711", "stasis-dnd"
CRM_USER, CRM_PASSWORD = "robot", "crm-Secret-0815"


@pytest.fixture
def fake() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(ARI_USER, ARI_PASSWORD, APP) as server:
        yield server


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator(CRM_USER, CRM_PASSWORD) as emulator:
        yield emulator


def config(folder: Path, fake: FakeAsterisk, crm: CrmEmulator, url: str, password: str) -> Path:
    path = folder / "stasis-dnd.ini"
    path.write_text(
        f"[ari]\nurl = {fake.url}\nusername = {ARI_USER}\npassword = {ARI_PASSWORD}\napp = {APP}\n"
        f"[crm]\nurl = {crm.url}\nusername = {CRM_USER}\npassword = {CRM_PASSWORD}\n"
        f"[outbox]\npath = {folder / 'outbox.sqlite3'}\nurl = {url}\npassword = {password}\n"
    )
    path.chmod(0o600)
    return path


def stasis_dnd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stasis_dnd", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_wrong_database_password_is_one_sentence_and_exit_1(
    command: str,
    tmp_path: Path,
    fake: FakeAsterisk,
    crm: CrmEmulator,
    postgres_outbox: OutboxSettings,
) -> None:
    path = config(tmp_path, fake, crm, postgres_outbox.url, "Wr0ng-db-pw")
    done = stasis_dnd(command, "--config", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"stasis-dnd: {path}: [outbox] url: the database server refused the login for"
        f" {postgres_outbox.url}: check the user and [outbox] password (or password_file)\n"
    )
    assert "Wr0ng-db-pw" not in done.stdout + done.stderr


@pytest.mark.parametrize("command", ["run", "check"])
def test_an_unreachable_database_is_one_sentence_and_exit_1(
    command: str, tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    url = f"postgresql://stasis@127.0.0.1:{free_port()}/outbox"
    path = config(tmp_path, fake, crm, url, "db-pw")
    done = stasis_dnd(command, "--config", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(
        f"stasis-dnd: {path}: [outbox] url: cannot reach the database server of {url}:"
    )
    assert done.stderr.count("\n") == 1


def test_check_reports_a_database_that_answers(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator, postgres_outbox: OutboxSettings
) -> None:
    path = config(tmp_path, fake, crm, postgres_outbox.url, postgres_outbox.password)
    done = stasis_dnd("check", "--config", str(path))
    line = f"ok      outbox database {postgres_outbox.url}: 0 pending, 0 dead\n"
    assert line in done.stdout, done.stdout + done.stderr
    assert postgres_outbox.password not in done.stdout + done.stderr
