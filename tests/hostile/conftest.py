"""Fixtures for the hostile-world tests (issue 7): a fake Asterisk with short
prompts, a CRM emulator, a throwaway certificate authority."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hostile_kit import (
    APP,
    ARI_PASSWORD,
    ARI_USER,
    CRM_PASSWORD,
    CRM_USER,
    SHORT_SOUNDS,
    App,
)

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import FakeAsterisk

SOUND_NAMES = {
    "prompt": "custom/IVR_DND_OPERATORS",
    "sorry": "sorry-youre-having-problems",
    "goodbye": "vm-goodbye",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sounds(**seconds): prompt lengths for the fake Asterisk")


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeAsterisk]:
    """The fake Asterisk with short prompts; `@pytest.mark.sounds(name=seconds)` changes some."""
    sounds = dict(SHORT_SOUNDS)
    marker = request.node.get_closest_marker("sounds")
    if marker is not None:
        sounds.update({SOUND_NAMES[k]: v for k, v in marker.kwargs.items()})
    with FakeAsterisk(ARI_USER, ARI_PASSWORD, APP, sounds) as server:
        yield server
        server.check()


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator(CRM_USER, CRM_PASSWORD) as emulator:
        yield emulator
        emulator.check()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority nobody else trusts."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def launch(fake: FakeAsterisk) -> Iterator[Callable[..., App]]:
    """Start `stasis-dnd run` and wait until it is connected to the fake;
    every app still running at the end is stopped and must exit with 0."""
    apps: list[App] = []

    def start(config: Path, *, connected: int = 1, **options: Any) -> App:
        app = App(config, **options).start()
        apps.append(app)
        app.wait_log("event=ari_connected", count=connected)
        fake.wait_connected(20)
        return app

    yield start
    for app in apps:
        assert app.process is not None
        if app.process.poll() is None:
            assert app.stop() == 0, app.text()
