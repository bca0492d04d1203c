"""One request the CRM always fails on holds up no one, on a real Asterisk 22.

Two callers press 1; the CRM answers HTTP 500 to the first caller's number
only (a dynamic class that throws on one number does that). The second
caller's request is delivered while the first still waits its own back-off.
The outbox file of the running app is the evidence, not a count after a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from app_kit import CALL_TIMEOUT, new_app_name, start_app, write_config
from e2e_kit import Ari

from stasis_dnd.callbacks.outbox import DELIVERED, PENDING, Outbox
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import SERVER_ERROR

pytestmark = pytest.mark.e2e

POISONED = "+79005550101"
HEALTHY = "+79005550102"


def test_a_request_the_crm_fails_on_does_not_hold_up_the_next_caller(
    asterisk: Ari,
    emulator: CrmEmulator,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    emulator.for_number(POISONED, SERVER_ERROR)
    name = new_app_name()
    config = write_config(tmp_path, asterisk, emulator, name)
    outbox = tmp_path / "outbox.sqlite3"

    def call(number: str) -> str:
        return cleanup_channels(
            asterisk.originate_caller(
                "press1after4",
                number=number,
                variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"},
            )
        )

    app = start_app(config, name, tmp_path / "app.log")
    try:
        first = call(POISONED)
        app.wait_log("event=callback_stored id=1 ")
        app.wait_log("event=crm_request_failed id=1 ")  # tried once, now waits alone
        second = call(HEALTHY)
        assert emulator.wait_for(lambda c: HEALTHY in c.delivered_phones(), CALL_TIMEOUT)
        deadline = time.monotonic() + 10
        while (rows := read_outbox(outbox)).get(HEALTHY, PENDING) != DELIVERED:
            assert time.monotonic() < deadline, f"not recorded as delivered: {rows}"
            time.sleep(0.1)
        for caller in (first, second):
            assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    finally:
        assert app.stop() == 0, app.log_text()
    # Stopped: what the outbox says now is final.
    store = Outbox.open(str(outbox))
    try:
        poisoned, healthy = sorted(store.entries(), key=lambda e: e.id)
    finally:
        store.close()
    assert (poisoned.phone, healthy.phone) == (POISONED, HEALTHY)  # first in line ...
    assert (healthy.state, healthy.attempts) == (DELIVERED, 1)  # ... yet the other went
    assert (poisoned.state, poisoned.last_error) == (PENDING, "failed: HTTP 500")
    assert poisoned.attempts == len(emulator.requests_for(POISONED)) >= 1
    assert [r.answer for r in emulator.requests_for(HEALTHY)] == ["ok"]
    assert "event=callback_dead" not in app.log_text()


def read_outbox(path: Path) -> dict[str, str]:
    """Each number's state in the running app's outbox."""
    store = Outbox.open(str(path))
    try:
        return {e.phone: e.state for e in store.entries()}
    finally:
        store.close()
