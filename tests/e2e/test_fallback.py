"""The dialplan-only fallback of extensions.conf.sample, with no app connected.

Stasis() finds no WebSocket for the app, sets STASISSTATUS=FAILED and the
dialplan runs the menu itself, filing the request with CURL().
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2e_kit import Ari, FakeCrm, assert_one_fallback_request

pytestmark = pytest.mark.e2e

# An app name nobody connects to, so a stray app on this machine cannot interfere.
NO_APP = "stasis-dnd-e2e-nobody"
# Queue 1 s, prompt from 1 s: a key pressed at 3 s lands in the menu's prompt.
IN_MENU = {"DND_APP": NO_APP, "DND_QUEUE_TIMEOUT": "1"}
# Call length: queue + prompt + confirmation + goodbye, with room to spare.
CALL_SECONDS = 25


def test_press_1_in_fallback_menu_files_one_request(
    asterisk: Ari, crm: FakeCrm, cleanup_channels: Callable[[str], str]
) -> None:
    caller = cleanup_channels(
        asterisk.originate_caller("press1after3", number="+79001234567", variables=IN_MENU)
    )
    crm.wait_for(1, timeout=15)
    # The call ends by itself after the confirmation and goodbye.
    assert asterisk.wait_gone(caller, timeout=CALL_SECONDS)
    assert_one_fallback_request(crm, "+79001234567")


def test_press_1_while_queued_files_one_request(
    asterisk: Ari, crm: FakeCrm, cleanup_channels: Callable[[str], str]
) -> None:
    # Break-out: 1 pressed while waiting in the queue (long time limit).
    caller = cleanup_channels(
        asterisk.originate_caller(
            "press1after1",
            number="79001112233",
            variables={"DND_APP": NO_APP, "DND_QUEUE_TIMEOUT": "60"},
        )
    )
    crm.wait_for(1, timeout=10)
    assert asterisk.wait_gone(caller, timeout=CALL_SECONDS)
    assert_one_fallback_request(crm, "79001112233")


def test_wrong_key_files_nothing_and_hangs_up(
    asterisk: Ari, crm: FakeCrm, cleanup_channels: Callable[[str], str]
) -> None:
    caller = cleanup_channels(asterisk.originate_caller("press7after3", variables=IN_MENU))
    assert asterisk.wait_gone(caller, timeout=CALL_SECONDS)
    assert crm.received() == []


def test_crm_error_is_not_retried(
    asterisk: Ari, crm: FakeCrm, cleanup_channels: Callable[[str], str]
) -> None:
    # The fallback cannot queue or retry: one attempt, then "sorry", goodbye.
    crm.answer = {"status": "error", "message": "java.lang.NullPointerException"}
    caller = cleanup_channels(asterisk.originate_caller("press1after3", variables=IN_MENU))
    assert asterisk.wait_gone(caller, timeout=CALL_SECONDS)
    assert len(crm.received()) == 1
