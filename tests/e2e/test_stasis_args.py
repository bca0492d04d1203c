"""What the app receives from extensions.conf.sample: StasisStart arguments.

A minimal ARI WebSocket client subscribes to a test-only app name (given to
the call as the DND_APP channel variable, which overrides the global), so a
real stasis-dnd running elsewhere cannot take these calls.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket
from e2e_kit import Ari, FakeCrm

pytestmark = pytest.mark.e2e

EVENT_TIMEOUT = 15.0


class AriEvents:
    """Reads one app's events into a queue on a thread (never blocks the socket)."""

    def __init__(self, ari: Ari, app: str) -> None:
        self.app = app
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.socket = websocket.create_connection(
            f"{ari.events_url}?app={app}&subscribeAll=false",
            header=[f"Authorization: {ari.basic_header}"],
            timeout=10,
        )
        self.socket.settimeout(None)
        self.thread = threading.Thread(target=self._read, name=f"ari-{app}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                message = self.socket.recv()
                if not message:
                    return
                self.events.put(json.loads(message))
        except (websocket.WebSocketException, OSError):
            return

    def wait_for(
        self, event_type: str, channel_id: str, timeout: float = EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """The next ``event_type`` event for ``channel_id``; others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event_type} for {channel_id} within {timeout} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event.get("type") == event_type and event.get("channel", {}).get("id") == channel_id:
                return event

    def close(self) -> None:
        self.socket.close()
        self.thread.join(timeout=5)


@pytest.fixture
def app_events(asterisk: Ari) -> Iterator[AriEvents]:
    events = AriEvents(asterisk, f"stasis-dnd-e2e-{uuid.uuid4().hex[:8]}")
    yield events
    events.close()


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
    assert start["args"] == ["TIMEOUT"]
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
    assert start["args"] == ["breakout", "1"]
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
