"""The read-back and number entry, through the app, on a real Asterisk 22 over SIP.

The phone (``KEYPAD``) keys in what the test gives it as RFC 4733 events, each
time once the prompt the test waits for has started playing (seen by the
observer); `stasis-dnd run` answers the call and files the request with the
CRM emulator.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from app_kit import PROMPT, Observer, RunningApp
from e2e_kit import KEYPAD, Ari, SipCall

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

READBACK = "sound:custom/IVR_DND_READBACK"
READBACK_MENU = "sound:custom/IVR_DND_READBACK_MENU"
NO_NUMBER = "sound:custom/IVR_DND_NO_NUMBER"
ENTER_NUMBER = "sound:custom/IVR_DND_ENTER_NUMBER"
CONFIRMED = "sound:custom/IVR_DND_CALLBACK_CONFIRMED"
# Queue, menu, read-back (about 15 s for 11 digits), confirmation, goodbye.
CALL_SECONDS = 60.0


@pytest.fixture
def crm(emulator: CrmEmulator) -> CrmEmulator:
    emulator.clear()
    return emulator


@pytest.fixture
def sip_call(
    asterisk: Ari, app: RunningApp, cleanup_channels: Callable[[str], str]
) -> Callable[..., SipCall]:
    """A SIP caller with a KEYPAD phone into the app's queue."""

    def place(number: str = "+79001234567", hidden: bool = False) -> SipCall:
        call = asterisk.originate_sip_caller(
            KEYPAD,
            number=number,
            hidden=hidden,
            variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
        )
        cleanup_channels(call.phone)
        cleanup_channels(call.caller)
        return call

    return place


def press_when_heard(
    asterisk: Ari, observer: Observer, call: SipCall, media: str, keys: str, *, times: int = 1
) -> None:
    """Once ``media`` has started playing to the caller, the phone keys in ``keys``."""
    observer.wait_heard(call.caller, media, timeout=CALL_SECONDS, times=times)
    asterisk.send_keys(call, keys)


def digit_parts(number: str) -> list[str]:
    """The read-back's sounds for ``number``: one ``sound:digits/N`` per digit."""
    return [f"sound:digits/{digit}" for digit in number.lstrip("+")]


def assert_read_back(events: list[tuple[str, str, str]], number: str) -> None:
    """The read-back played its prompt, every digit of ``number`` and its menu, to the end."""
    started = [media for kind, _, media in events if kind == "PlaybackStarted"]
    assert started == [READBACK, *digit_parts(number), READBACK_MENU]
    assert events[-1] == ("PlaybackFinished", "done", READBACK_MENU)


def test_a_hidden_caller_keys_in_a_number_and_the_crm_gets_it(
    asterisk: Ari,
    app: RunningApp,
    crm: CrmEmulator,
    observer: Observer,
    sip_call: Callable[..., SipCall],
) -> None:
    call = sip_call(hidden=True)
    press_when_heard(asterisk, observer, call, PROMPT, "1")
    # "anonymous" is no number: the caller is told so and asked for one.
    press_when_heard(asterisk, observer, call, ENTER_NUMBER, "79001234567#")
    press_when_heard(asterisk, observer, call, READBACK_MENU, "1")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["79001234567"], CALL_SECONDS)
    assert crm.delivered()[0].param("callerId") is None  # no caller id to send
    assert_read_back(observer.playback(call.caller, READBACK), "79001234567")
    assert asterisk.wait_gone(call.caller, CALL_SECONDS)
    heard = observer.heard(call.caller)
    assert heard[:3] == [PROMPT, NO_NUMBER, ENTER_NUMBER]
    assert CONFIRMED in heard
    assert "outcome=callback" in app.call_line(call.caller)


def test_a_caller_confirms_during_the_digits_and_the_read_back_stops_at_once(
    asterisk: Ari,
    app: RunningApp,
    crm: CrmEmulator,
    observer: Observer,
    sip_call: Callable[..., SipCall],
) -> None:
    call = sip_call(number="+79005550104")
    press_when_heard(asterisk, observer, call, PROMPT, "1")
    # The third digit ("0") is being said: a key must stop the read-back (barge-in).
    press_when_heard(asterisk, observer, call, "sound:digits/0", "1")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79005550104"], CALL_SECONDS)
    assert asterisk.wait_gone(call.caller, CALL_SECONDS)
    events = observer.playback(call.caller, READBACK)
    started = [media for kind, _, media in events if kind == "PlaybackStarted"]
    # Said without its "+", digit by digit, and stopped before the menu.
    assert started[:4] == [READBACK, *digit_parts("+790")]
    assert READBACK_MENU not in started
    assert events[-1][:2] == ("PlaybackFinished", "done")
    assert CONFIRMED in observer.heard(call.caller)
    assert "outcome=callback" in app.call_line(call.caller)


def test_a_caller_asks_for_another_number_and_the_crm_gets_it_with_the_caller_id(
    asterisk: Ari,
    app: RunningApp,
    crm: CrmEmulator,
    observer: Observer,
    sip_call: Callable[..., SipCall],
) -> None:
    call = sip_call(number="+79005550105")
    press_when_heard(asterisk, observer, call, PROMPT, "1")
    press_when_heard(asterisk, observer, call, READBACK_MENU, "2")
    press_when_heard(asterisk, observer, call, ENTER_NUMBER, "79005550999#")
    press_when_heard(asterisk, observer, call, READBACK_MENU, "1", times=2)
    assert crm.wait_for(lambda c: c.delivered_phones() == ["79005550999"], CALL_SECONDS)
    assert crm.delivered()[0].param("callerId") == "+79005550105"
    assert_read_back(observer.playback(call.caller, READBACK, times=2), "79005550999")
    assert asterisk.wait_gone(call.caller, CALL_SECONDS)
    assert "outcome=callback" in app.call_line(call.caller)
