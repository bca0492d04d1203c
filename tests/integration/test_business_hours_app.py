"""`stasis-dnd run` outside business hours: today is a closed date, so every
call finds the office closed and follows `[ivr] outside_hours`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import AppProcess, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import (
    CONTINUED,
    HUNGUP_BY_APP,
    FakeAsterisk,
    key_in,
    press,
)

PROMPT = "sound:custom/IVR_DND_OPERATORS"
CLOSED = "sound:custom/IVR_DND_CLOSED"
NEXT_DAY = "sound:custom/IVR_DND_CALLBACK_NEXT_DAY"
GOODBYE = "sound:vm-goodbye"


def closed_app(tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator, policy: str) -> AppProcess:
    # Yesterday to tomorrow, so a test running over midnight is still closed.
    today = datetime.now(UTC).date()
    days = ", ".join(str(today + timedelta(days=step)) for step in (-1, 0, 1))
    extra = f"[ivr]\nclosed_dates = {days}\ntimezone = UTC\noutside_hours = {policy}\n"
    app = AppProcess(write_config(tmp_path, fake, crm, extra)).start()
    fake.wait_connected(20)
    app.wait_log("event=ari_connected")
    return app


def test_announce_plays_the_closed_message_and_files_nothing(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    app = closed_app(tmp_path, fake, crm, "announce")
    try:
        call = fake.place_call("+79001234567", state="Ring", script=press("1", after=0.3))
        assert call.wait_done(30) == HUNGUP_BY_APP
        assert call.answered
        assert call.media_heard() == [CLOSED, GOODBYE]
        app.wait_log(f"event=call channel={call.id} caller=+79*******67 outcome=closed")
        assert crm.requests == []
    finally:
        assert app.stop() == 0


def test_continue_hands_the_call_back_unanswered(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    app = closed_app(tmp_path, fake, crm, "continue")
    try:
        call = fake.place_call("+79001234567", state="Ring")
        assert call.wait_done(30) == CONTINUED
        assert not call.answered
        assert call.media_heard() == []
        app.wait_log("outcome=closed")
        assert crm.requests == []
    finally:
        assert app.stop() == 0


def test_offer_files_the_request_and_promises_the_next_working_day(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    app = closed_app(tmp_path, fake, crm, "offer")
    try:
        script = press("1", after=0.1) + key_in("1", after_media="sound:custom/IVR_DND_READBACK")
        call = fake.place_call("+79001234567", script=script)
        assert call.wait_done(30) == HUNGUP_BY_APP
        assert call.media_heard()[0] == PROMPT
        assert call.media_heard()[-2:] == [NEXT_DAY, GOODBYE]
        assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])
    finally:
        assert app.stop() == 0
