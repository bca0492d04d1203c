"""The reproduction of the original setup (bench/original) works in the sandbox.

Benchmarks (issue 6) compare the app with it on the same Asterisk, so it must
do what the original did: from the same queue into the FreePBX-style IVR; on
"1" the PHP AGI script sends ONE GET to the CRM with the caller's number and
the call is hung up; any other key: sorry, goodbye, hang up. The script logs a
microsecond timestamp right before the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_kit import Ari, FakeCrm

pytestmark = pytest.mark.e2e

# Written by dndoperator.php inside the chroot (ORIGINAL_LOG, sandbox_config.py).
ORIGINAL_LOG = "var/log/asterisk/dnd-original.log"
# Queue 1 s, then the prompt: a key pressed at 3 s lands in the IVR.
IN_IVR = {"DND_QUEUE_TIMEOUT": "1"}
CALL_SECONDS = 20


def log_lines(root: Path, uniqueid: str) -> list[list[str]]:
    """The AGI script's log lines for one call: [time, what, uniqueid, detail]."""
    path = root / ORIGINAL_LOG
    if not path.exists():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [row for row in rows if len(row) == 4 and row[2] == uniqueid]


def test_press_1_in_original_ivr_sends_one_get_with_the_number(
    asterisk: Ari,
    crm: FakeCrm,
    sandbox_root: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    before = time.time()
    caller = cleanup_channels(
        asterisk.originate_caller(
            "press1after3", number="+79001234567", variables=IN_IVR, context="original-queue"
        )
    )
    crm.wait_for(1, timeout=15)
    # No confirmation prompt: the original hangs up right after the AGI.
    assert asterisk.wait_gone(caller, timeout=CALL_SECONDS)
    after = time.time()

    received = crm.received()
    assert len(received) == 1, received
    request = received[0]
    assert request.method == "GET"
    assert request.path == "/admin/dynamic.do"
    assert request.params == {
        "action": ["runDynamicClass"],
        "class": ["ru.bgcrm.dyn.utils.asterisk.AsteriskIn"],
        "sub": ["dndoperator"],
        "aon": ["+79001234567"],  # URL-encoded by the script: "+" is not a space
        "authToSession": ["0"],
        "j_username": ["sandbox-user"],
        "j_password": ["sandbox-password"],
    }

    rows = log_lines(sandbox_root, caller)
    assert [(row[1], row[3]) for row in rows] == [("request", "+79001234567"), ("answer", "ok")]
    requested, answered = float(rows[0][0]), float(rows[1][0])
    assert before <= requested <= answered <= after
    assert len(rows[0][0].split(".")[1]) == 6  # microseconds


def test_wrong_key_in_original_ivr_sends_nothing_and_hangs_up(
    asterisk: Ari,
    crm: FakeCrm,
    sandbox_root: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    caller = cleanup_channels(
        asterisk.originate_caller("press7after3", variables=IN_IVR, context="original-queue")
    )
    # "i": sorry-youre-having-problems, vm-goodbye, hang up.
    assert asterisk.wait_gone(caller, timeout=CALL_SECONDS)
    assert crm.received() == []
    assert log_lines(sandbox_root, caller) == []
