"""The app asks Asterisk for the event types it handles only (PUT
/applications/{app}/eventFilter), again on every connect, and goes on with
every event where Asterisk refuses (older than 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import AppProcess

from stasis_dnd.runtime.parked import EVENT_TYPES
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import HUNGUP_BY_APP, FakeAsterisk, key_in, press

READBACK = "sound:custom/IVR_DND_READBACK"
WANTED = sorted(EVENT_TYPES)


def press_1_call(fake: FakeAsterisk, number: str) -> None:
    """A caller in state Ring (so the app's answer makes a ChannelStateChange)
    who presses 1 and confirms; the CRM gets the number."""
    call = fake.place_call(
        number, state="Ring", script=press("1", after=0.2) + key_in("1", after_media=READBACK)
    )
    assert call.wait_done(30) == HUNGUP_BY_APP
    sent = set(call.event_types())
    assert {"StasisStart", "PlaybackStarted", "ChannelDtmfReceived", "StasisEnd"} <= sent


@pytest.fixture
def stopped_app(config: Path) -> Iterator[AppProcess]:
    """An app the test starts itself (after setting the fake up)."""
    process = AppProcess(config)
    yield process
    if process.process is not None:
        assert process.stop() == 0, process.text()


def test_the_app_asks_only_for_the_events_it_handles(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    fake.wait_until(lambda: fake.event_filter() == (WANTED, []), 10, "the event filter")
    press_1_call(fake, "+79001234567")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234567"], timeout=30)
    calls = fake.calls()
    assert "ChannelStateChange" not in calls[0].event_types()
    assert fake.counters()["events_filtered"] >= 1


def test_the_filter_is_set_again_on_every_connect(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    fake.wait_until(lambda: fake.counters().get("event_filter_set") == 1, 10, "the filter")
    assert fake.drop_connections() == 1  # no call in the app: Asterisk forgets its filter
    app.wait_log("event=ari_connected", count=2)
    fake.wait_until(lambda: fake.counters().get("event_filter_set") == 2, 10, "the filter again")
    assert fake.event_filter() == (WANTED, [])
    press_1_call(fake, "+79001234568")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234568"], timeout=30)


@pytest.mark.parametrize("status", [404, 405, 400])
def test_an_asterisk_that_refuses_the_filter_serves_every_event(
    status: int, fake: FakeAsterisk, crm: CrmEmulator, stopped_app: AppProcess
) -> None:
    fake.refuse_event_filter(status=status)
    stopped_app.start()
    stopped_app.wait_log("event=event_filter_refused")
    assert f"{status}" in next(x for x in stopped_app.lines() if "event_filter_refused" in x)
    press_1_call(fake, "+79001234569")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234569"], timeout=30)
    assert "ChannelStateChange" in fake.calls()[0].event_types()
    # Refused again after a reconnect: said once only.
    assert fake.drop_connections() == 1
    stopped_app.wait_log("event=ari_connected", count=2)
    press_1_call(fake, "+79001234570")
    assert crm.wait_for(lambda c: len(c.delivered_phones()) == 2, timeout=30)
    assert stopped_app.text().count("event=event_filter_refused") == 1
    noisy = [x for x in stopped_app.lines() if "level=WARNING" in x or "level=ERROR" in x]
    assert [x for x in noisy if "ari_disconnected" not in x] == []
