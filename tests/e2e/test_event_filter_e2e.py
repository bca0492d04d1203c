"""The event filter on a real Asterisk 22: what PUT /applications/{app}/eventFilter
does, and that the app sets its own on connecting and still serves callers."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import pytest
from app_kit import CALL_TIMEOUT, RunningApp
from e2e_kit import Ari, AriEvents

from stasis_dnd.runtime.parked import EVENT_TYPES
from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e


def test_asterisk_sends_an_app_only_the_types_it_allows(
    asterisk: Ari, app_events: AriEvents, cleanup_channels: Callable[[str], str]
) -> None:
    allowed = [{"type": "StasisStart"}, {"type": "StasisEnd"}]
    answer = asterisk.request(
        "PUT", f"applications/{app_events.app}/eventFilter", json={"allowed": allowed}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["events_allowed"] == allowed
    channel = cleanup_channels(asterisk.originate_into_app(app_events.app, script="quitafter1"))
    app_events.wait_for("StasisEnd", channel, timeout=CALL_TIMEOUT)
    seen = []
    while True:
        try:
            seen.append(app_events.events.get_nowait()["type"])
        except queue.Empty:
            break
    # wait_for skipped what came before StasisEnd: only the StasisStart may have.
    assert set(seen) <= {"StasisStart", "StasisEnd"}


def test_asterisk_refuses_a_malformed_filter(asterisk: Ari, app_events: AriEvents) -> None:
    answer = asterisk.request(
        "PUT", f"applications/{app_events.app}/eventFilter", json={"allowed": "StasisStart"}
    )
    assert answer.status_code == 400, answer.text


def test_the_app_asks_for_its_types_and_serves_callers(
    asterisk: Ari,
    app: RunningApp,
    emulator: CrmEmulator,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    wanted = [{"type": t} for t in sorted(EVENT_TYPES)]
    deadline = time.monotonic() + 10  # set just after connecting, by the recovery thread
    while asterisk.request("GET", f"applications/{app.name}").json()["events_allowed"] != wanted:
        assert time.monotonic() < deadline, "the app's event filter was never set"
        time.sleep(0.1)
    caller = cleanup_channels(
        asterisk.originate_caller(
            "press1after4",
            number="+7 900 123-45-68",
            variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
        )
    )
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    assert emulator.wait_for(lambda c: len(c.requests) >= 1)
    assert [r.param("aon") for r in emulator.requests] == ["+79001234568"]
    app.wait_log(f"event=call channel={caller}")
