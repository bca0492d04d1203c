"""Where the app hands a call back, on a real Asterisk 22 with
extensions.conf.sample: a caller whose request is stored and who is still in
the app when its drain ends is continued to dnd-fallback,hang,1 and hears
only goodbye there, never the dialplan's menu (a second "1" there would file
a second request through CURL).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from app_kit import new_app_name, start_app, write_config
from e2e_kit import Ari, FakeCrm

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e


def dialplan_places(asterisk: Ari, channel_id: str, timeout: float) -> list[tuple[str, str]]:
    """(context, extension) pairs the channel runs in the dialplan until it is gone."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = asterisk.request("GET", f"channels/{channel_id}")
        if response.status_code == 404:
            return seen
        place = response.json().get("dialplan", {})
        here = (str(place.get("context")), str(place.get("exten")))
        if not seen or seen[-1] != here:
            seen.append(here)
        time.sleep(0.05)
    raise AssertionError(f"channel {channel_id} still up after {timeout} s; it ran {seen}")


def test_drain_during_the_confirmation_continues_to_goodbye_only(
    asterisk: Ari,
    emulator: CrmEmulator,
    crm_server: FakeCrm,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    crm_server.clear()
    name = new_app_name()
    config = write_config(tmp_path, asterisk, emulator, name)
    text = config.read_text().replace("drain_timeout = 2s", "drain_timeout = 0s")
    config.write_text(text + "[ivr]\nconfirmation = custom/IVR_DND_CALLBACK_CONFIRMED\n")
    app = start_app(config, name, tmp_path / "app.log")
    caller = cleanup_channels(
        asterisk.originate_caller(
            "press1after4", variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"}
        )
    )
    app.wait_log("event=callback_stored")
    assert app.stop() == 0  # the caller is hearing the confirmation now
    places = dialplan_places(asterisk, caller, timeout=20)
    assert ("dnd-fallback", "hang") in places, places
    assert ("dnd-fallback", "s") not in places, places  # the menu was never offered again
    app.wait_log(f"event=call channel={caller}")
    assert "outcome=callback ending=continued" in app.log_text()
    # One request, from the app; none from the dialplan's CURL.
    assert emulator.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])
    assert len(emulator.requests) == 1
    assert crm_server.received() == []
