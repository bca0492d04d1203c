"""Fixtures of the callback-service tests: one CRM emulator per module, a fake
clock, and `make` for services on the test's outbox file. Modules that want
the emulator emptied and checked around each test (and no password in the
log) use the `fresh_crm` fixture. `backend`: each outbox backend in turn, for the
contract tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from callbacks_kit import PASSWORD, Backend, FakeClock, Services

from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator("dnd", PASSWORD) as emulator:
        yield emulator


@pytest.fixture
def fresh_crm(crm: CrmEmulator, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    crm.clear()
    crm.password = PASSWORD
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    yield
    crm.restore()
    crm.check()
    assert PASSWORD not in caplog.text


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(crm: CrmEmulator, tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    services = Services(crm, tmp_path, clock)
    yield services
    services.stop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each outbox backend in turn: the SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        settings = OutboxSettings(path=str(tmp_path / "state" / "outbox.sqlite3"))
    else:
        settings = request.getfixturevalue("postgres_outbox")
    found = Backend(request.param, settings)
    yield found
    found.close_all()
