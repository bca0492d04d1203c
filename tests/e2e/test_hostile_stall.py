"""A silently stalled ARI WebSocket on a real Asterisk (issue 7, faults).

SIGSTOP freezes the sandbox Asterisk: its TCP connections stay open and the
kernel still accepts new ones, but nothing answers: no close, no data, the
way a hung Asterisk or a dead network path looks. Only the app's keepalive
can notice (stasis_dnd/shell/ari_events.py: a ping after 2 s of silence, dead
3 s later). After SIGCONT the app must reconnect, take over the caller still
parked in Stasis and file that caller's 1 exactly once.

Asterisk resumes as soon as the app has noticed, while the app's first
reconnection attempt still waits for its answer (the app here waits up to
10 s), so that attempt is the one that connects. An attempt that gives up
during the freeze leaves its upgrade request queued in Asterisk; Asterisk 22
handles it after the resume, for a client long gone, and when that dead
session closes it can unregister the app from under the live connection (seen
here in 2 runs of 6 with one such request queued, in every run with three or
more): the app stays connected, answers pings and gets no events. A known
gap of the app, not covered here.
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
from app_kit import CALL_TIMEOUT, PROMPT, Observer, RunningApp, new_app_name, start_app
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


@pytest.fixture
def patient_app(asterisk: Ari, emulator: CrmEmulator, tmp_path: Path) -> Iterator[RunningApp]:
    """The app, waiting 10 s (not 3) for Asterisk to answer a connection attempt."""
    name = new_app_name()
    config = write_app_config(tmp_path, asterisk, emulator, name, "connect_timeout = 10\n")
    running = start_app(config, name, tmp_path / "app.log")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log_text()


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
    # The phone presses 1 only when told: after the app has taken the call over.
    go = f"E2E_GO_{uuid.uuid4().hex[:8]}"
    caller = cleanup_channels(
        asterisk.originate_caller(
            f"press1if{go}",
            number="+79005550301",
            variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
        )
    )
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

        app.wait_log("event=ari_connected", timeout=30, after=before)
        app.wait_log(f"event=recovered channel={caller}", timeout=30, after=before)
        # The recovered call starts afresh: the menu plays again.
        deadline = time.monotonic() + 15
        while observer.heard(caller).count(PROMPT) < 2:
            assert time.monotonic() < deadline, observer.heard(caller)
            time.sleep(0.05)
        asterisk.set_global(go, "1")

        # If this fails with "recovery_failed ... 404" in the log, the app is
        # connected but no longer registered (see the module docstring).
        assert emulator.wait_for(lambda c: c.delivered_phones() == ["+79005550301"], timeout=15), (
            app.log_text()
        )
        assert asterisk.wait_gone(caller, CALL_TIMEOUT)
        app.wait_log(f"event=call channel={caller} ", after=before)
        time.sleep(0.5)  # a second request would arrive about now
        assert len(emulator.requests) == 1
        assert "outcome=callback ending=hung_up" in app.call_line(caller)
        # Still registered with Asterisk, and nothing left parked.
        assert asterisk.app_channels(app.name) == []
        after = app.log_text()[before:]
        assert after.count("event=ari_connected") == 1, after
        assert "Traceback" not in after and "level=ERROR" not in after, after
    finally:
        asterisk.set_global(go, "")
