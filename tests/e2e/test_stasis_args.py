"""What the app receives from extensions.conf.sample: StasisStart arguments.

A minimal ARI WebSocket client subscribes to a test-only app name (given to
the call as the DND_APP channel variable, which overrides the global), so a
real stasis-dnd running elsewhere cannot take these calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from e2e_kit import Ari, AriEvents, FakeCrm

pytestmark = pytest.mark.e2e


def test_queue_timeout_arrives_with_timeout_arg(
    asterisk: Ari,
    app_events: AriEvents,
    crm: FakeCrm,
    cleanup_channels: Callable[[str], str],
) -> None:
    caller = cleanup_channels(
        asterisk.originate_caller(
            "silent", variables={"DND_APP": app_events.app, "DND_QUEUE_TIMEOUT": "1"}
        )
    )
    start = app_events.wait_for("StasisStart", caller)
    assert start["args"][0] == "TIMEOUT"
    assert start["application"] == app_events.app
    channel = start["channel"]
    assert channel["caller"] == {"name": "Ivan", "number": "+79001234567"}
    assert channel["state"] == "Up"  # a Local channel whose other half answered
    assert channel["language"] == "en"
    assert channel["dialplan"]["context"] == "dnd-queue"

    response = asterisk.request("DELETE", f"channels/{caller}")
    assert response.status_code == 204, response.text
    app_events.wait_for("StasisEnd", caller)
    assert crm.received() == []


def test_breakout_arrives_with_breakout_and_digit(
    asterisk: Ari,
    app_events: AriEvents,
    crm: FakeCrm,
    cleanup_channels: Callable[[str], str],
) -> None:
    caller = cleanup_channels(
        asterisk.originate_caller(
            "press1after1", variables={"DND_APP": app_events.app, "DND_QUEUE_TIMEOUT": "60"}
        )
    )
    start = app_events.wait_for("StasisStart", caller, timeout=10)
    assert start["args"][:2] == ["breakout", "1"]
    assert start["channel"]["dialplan"]["context"] == "dnd-breakout"

    # "continue" hands the call back: the dialplan runs its own menu.
    response = asterisk.request("POST", f"channels/{caller}/continue")
    assert response.status_code == 204, response.text
    app_events.wait_for("StasisEnd", caller)
    deadline = time.monotonic() + 5
    context = ""
    while time.monotonic() < deadline and context != "dnd-fallback":
        context = asterisk.request("GET", f"channels/{caller}").json()["dialplan"]["context"]
        time.sleep(0.1)
    assert context == "dnd-fallback"
    assert crm.received() == []  # the caller has not pressed 1 in the menu
