"""A real Asterisk (sandbox/asterisk) and a fake CRM for end-to-end tests.

The session starts a loopback HTTP server that records every CRM request,
then provisions and starts the sandbox with the CRM URL pointing at it, and
stops the sandbox at the end. If the sandbox cannot start the tests FAIL: a
missing Asterisk must never pass as a skip in CI.

Needs root (chroot, mount) and, the first time, network to Debian's mirror.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from app_kit import (
    CRM_PASSWORD,
    CRM_USER,
    Observer,
    RunningApp,
    new_app_name,
    start_app,
    write_config,
)
from e2e_kit import Ari, AriEvents, FakeCrm, crm_handler

from stasis_dnd.testing.crm_emulator import CrmEmulator

REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "sandbox" / "asterisk"

ARI_PORT = int(os.environ.get("STASIS_DND_SANDBOX_ARI_PORT", "18088"))
ARI_USER = os.environ.get("STASIS_DND_SANDBOX_ARI_USER", "stasis-dnd")
ARI_PASSWORD = os.environ.get("STASIS_DND_SANDBOX_ARI_PASSWORD", "stasis-dnd-sandbox")


@pytest.fixture(scope="session")
def crm_server() -> Iterator[FakeCrm]:
    crm = FakeCrm()
    server = ThreadingHTTPServer(("127.0.0.1", 0), crm_handler(crm))
    crm.url = f"http://127.0.0.1:{server.server_address[1]}/admin/dynamic.do"
    thread = threading.Thread(target=server.serve_forever, name="fake-crm", daemon=True)
    thread.start()
    yield crm
    server.shutdown()
    server.server_close()


@pytest.fixture
def crm(crm_server: FakeCrm) -> FakeCrm:
    """The session's fake CRM, emptied for this test."""
    crm_server.clear()
    return crm_server


def _run_sandbox(
    command: str, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SANDBOX), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def sandbox_root(asterisk: Ari) -> Path:
    """The running sandbox's chroot folder (its files as seen from outside)."""
    result = _run_sandbox("path", dict(os.environ), timeout=30)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


@pytest.fixture(scope="session")
def asterisk(crm_server: FakeCrm) -> Iterator[Ari]:
    """A running sandbox Asterisk whose dialplan files CRM requests at ``crm_server``."""
    env = {**os.environ, "STASIS_DND_SANDBOX_CRM_URL": crm_server.url}
    # The first run builds the chroot (1-2 minutes with network).
    result = _run_sandbox("start", env, timeout=900)
    if result.returncode != 0:
        pytest.fail(
            "sandbox Asterisk did not start (end-to-end tests need root and, the first "
            f"time, network to Debian's mirror):\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    try:
        yield Ari(f"http://127.0.0.1:{ARI_PORT}/ari", ARI_USER, ARI_PASSWORD)
    finally:
        stopped = _run_sandbox("stop", env, timeout=120)
        # Too late to fail the tests; say it where the next run will look.
        if stopped.returncode != 0:
            print(f"\nsandbox/asterisk stop failed:\n{stopped.stdout}{stopped.stderr}")


@pytest.fixture
def cleanup_channels(asterisk: Ari) -> Iterator[Callable[[str], str]]:
    """Register channel ids to hang up at the end of the test."""
    channels: list[str] = []

    def register(channel_id: str) -> str:
        channels.append(channel_id)
        return channel_id

    yield register
    for channel_id in channels:
        asterisk.hangup_quietly(channel_id)


@pytest.fixture
def app_events(asterisk: Ari) -> Iterator[AriEvents]:
    """Events of a fresh test-only app name (pass it to a call as DND_APP).

    A real stasis-dnd running elsewhere cannot take these calls.
    """
    events = AriEvents(asterisk, f"stasis-dnd-e2e-{uuid.uuid4().hex[:8]}")
    yield events
    events.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrmEmulator]:
    """The BGERP emulator the app under test files its requests with."""
    with CrmEmulator(CRM_USER, CRM_PASSWORD) as crm:
        yield crm
        crm.check()


@pytest.fixture(scope="module")
def app(
    asterisk: Ari, emulator: CrmEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    """`stasis-dnd run` on the sandbox, one per test module, under a fresh app name."""
    folder = tmp_path_factory.mktemp("app")
    name = new_app_name()
    running = start_app(write_config(folder, asterisk, emulator, name), name, folder / "app.log")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log_text()


@pytest.fixture
def observer(asterisk: Ari) -> Iterator[Observer]:
    """What callers hear: every playback on every channel."""
    seen = Observer(asterisk)
    yield seen
    seen.close()
