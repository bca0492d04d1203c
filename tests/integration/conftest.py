"""Fixtures: a fake Asterisk, a CRM emulator and an app config on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import APP, ARI_PASSWORD, ARI_USER, CRM_PASSWORD, CRM_USER, AppProcess, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import FakeAsterisk


@pytest.fixture
def fake() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(ARI_USER, ARI_PASSWORD, APP) as server:
        yield server
        server.check()


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator(CRM_USER, CRM_PASSWORD) as emulator:
        yield emulator
        emulator.check()


@pytest.fixture
def config(tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator) -> Path:
    return write_config(tmp_path, fake, crm)


@pytest.fixture
def app(config: Path, fake: FakeAsterisk) -> Iterator[AppProcess]:
    """A running app, connected to the fake; stopped with SIGTERM after the test."""
    process = AppProcess(config).start()
    try:
        fake.wait_connected(20)
        process.wait_log("event=ari_connected")
        yield process
    finally:
        status = process.stop()
        assert status == 0, process.text()
