"""A silently stalled ARI WebSocket on a real Asterisk (issue 7, faults).

SIGSTOP freezes the sandbox Asterisk: its TCP connections stay open and the
kernel still accepts new ones, but nothing answers: no close, no data, the
way a hung Asterisk or a dead network path looks. Only the app's keepalive
can notice (stasis_dnd/ari/events.py: a ping after 2 s of silence, dead
3 s later). After SIGCONT the app must reconnect, take over the caller still
parked in Stasis and file that caller's 1 exactly once.

Asterisk resumes as soon as the app has noticed, while the app's first
reconnection attempt still waits for its answer (the app here waits up to
10 s), so that attempt is the one that connects. Longer freezes are not
tested here, because Asterisk 22.10 itself does not come back from them
reliably. Each connection attempt that gives up during such a freeze leaves
its upgrade request queued, and Asterisk handles it after the resume for a
client long gone. Seen in runs with three such requests:
- the dead session unregisters the app from under the live connection; the
  app notices within 10 s and reconnects (`event=app_not_registered`; tested
  against the fake Asterisk in tests/hostile/test_faults_ari.py);
- a recovered channel's new prompt never starts (2 runs of 8);
- once, GET /applications hung for good.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from app_kit import (
    CALL_TIMEOUT,
    PROMPT,
    Observer,
    RunningApp,
    assert_filed_once,
    new_app_name,
    start_app,
)
from app_kit import write_config as write_app_config
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

# The keepalive's own bound is 2 + 3 = 5 s; four times that for a busy machine.
STALL_NOTICED = 20.0
# Where sandbox/asterisk keeps the running Asterisk's pid (relative to the root).
SANDBOX_STATE = "run/stasis-dnd-sandbox.json"


def sandbox_asterisk_pid(root: Path) -> int:
    """The pid of the Asterisk running in the sandbox ``root``."""
    pid = int(json.loads((root / SANDBOX_STATE).read_text())["pid"])
    # Never signal a reused pid: it must be an Asterisk inside this chroot.
    assert os.readlink(f"/proc/{pid}/root") == str(root.resolve()), pid
    assert "asterisk" in Path(f"/proc/{pid}/comm").read_text(), pid
    return pid


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Asterisk stopped (SIGSTOP) for the duration; always resumed after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def app_with(asterisk: Ari, emulator: CrmEmulator, folder: Path, ari_extra: str = "") -> RunningApp:
    name = new_app_name()
    config = write_app_config(folder, asterisk, emulator, name, ari_extra)
    return start_app(config, name, folder / "app.log")


@pytest.fixture
def patient_app(asterisk: Ari, emulator: CrmEmulator, tmp_path: Path) -> Iterator[RunningApp]:
    """The app, waiting 10 s (not 3) for Asterisk to answer a connection attempt."""
    running = app_with(asterisk, emulator, tmp_path, "connect_timeout = 10\n")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log_text()


def park_caller(asterisk: Ari, app: RunningApp, number: str, go: str) -> str:
    """A caller in the app's menu whose phone presses 1 once global ``go`` is set."""
    return asterisk.originate_caller(
        f"press1if{go}",
        number=number,
        variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
    )


def assert_served_after_resume(
    asterisk: Ari,
    app: RunningApp,
    emulator: CrmEmulator,
    observer: Observer,
    *,
    caller: str,
    number: str,
    go: str,
    before: int,
    connect_within: float,
) -> None:
    """The app takes the parked caller over, and its 1 is filed exactly once."""
    app.wait_log("event=ari_connected", timeout=connect_within, after=before)
    app.wait_log(f"event=recovered channel={caller}", timeout=connect_within, after=before)
    # The recovered call starts afresh: the menu plays again.
    deadline = time.monotonic() + 15
    while observer.heard(caller).count(PROMPT) < 2:
        assert time.monotonic() < deadline, (observer.heard(caller), app.log_text()[before:])
        time.sleep(0.05)
    asterisk.set_global(go, "1")
    # The 1, then the number read back (about 16 s) and confirmed by silence.
    assert emulator.wait_for(lambda c: c.delivered_phones() == [number], timeout=CALL_TIMEOUT), (
        observer.heard(caller),
        app.log_text()[before:],
    )
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    app.wait_log(f"event=call channel={caller} ", after=before)
    assert "outcome=callback ending=hung_up" in app.call_line(caller)
    # Registered with Asterisk, and nothing left parked.
    assert asterisk.app_channels(app.name) == []
    assert app.stop() == 0, app.log_text()
    assert_filed_once(app.config, emulator, number)
    after = app.log_text()[before:]
    assert "Traceback" not in after and "level=ERROR" not in after, after


def test_stalled_websocket_is_noticed_and_the_parked_caller_is_served(
    asterisk: Ari,
    patient_app: RunningApp,
    emulator: CrmEmulator,
    *,
    observer: Observer,
    sandbox_root: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    app = patient_app
    emulator.clear()
    go = f"E2E_GO_{uuid.uuid4().hex[:8]}"
    caller = cleanup_channels(park_caller(asterisk, app, "+79005550301", go))
    try:
        # Frozen mid-prompt: the app then has no timer of its own running.
        observer.wait_heard(caller, PROMPT)
        before = len(app.log_text())
        with frozen(sandbox_asterisk_pid(sandbox_root)):
            # Waited for, not timed: passes as soon as the line appears.
            app.wait_log("event=ari_disconnected", timeout=STALL_NOTICED, after=before)
        # The keepalive noticed it, not a TCP timeout (which would take minutes).
        assert (
            "event=ari_disconnected reason='no answer to a ping within 3 s'"
            in app.log_text()[before:]
        )
        assert_served_after_resume(
            asterisk, app, emulator, observer,
            caller=caller, number="+79005550301", go=go, before=before, connect_within=30,
        )  # fmt: skip
        assert app.log_text()[before:].count("event=ari_connected") == 1
    finally:
        asterisk.set_global(go, "")
