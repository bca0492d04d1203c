"""The registry gives each call the profile the dialplan chose (`profile=`,
else the queue), with that profile's prompts, hours and CRM facts; and keeps
it across a recovery, also after a restart (from the channel's Stasis())."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from stasis_dnd.core import Channel, ChannelDtmfReceived, StasisStart
from stasis_dnd.hours import parse_hours
from stasis_dnd.metrics import Metrics
from stasis_dnd.profiles import Profiles
from stasis_dnd.runtime.registry import CallRegistry, Recover
from stasis_dnd.settings import CrmSettings, IvrSettings, Profile, Settings

CHANNEL = Channel("c1", "Up", "", "+79000000001", "en")
BASE = IvrSettings(answer_pause=0, readback=False)
SALES = Profile(
    "sales",
    IvrSettings(answer_pause=0, readback=False, prompt="custom/SALES"),
    CrmSettings(sub="dndsales"),
    ("998",),
)
# Closed all week but Sunday: a Monday call is outside its hours.
NIGHT = Profile(
    "night",
    IvrSettings(
        answer_pause=0,
        prompt="custom/NIGHT",
        hours=parse_hours("sun 00:00-23:59"),
        timezone="UTC",
        outside_hours="announce",
    ),
    CrmSettings(),
)
MONDAY_NOON = datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("UTC")).timestamp()


def registry(app_data: str | None = None) -> tuple[Any, Any, CallRegistry]:
    rest = mock.Mock()
    found: dict[str, Any] = {"id": "c1", "state": "Up", "caller": {"number": "+79000000001"}}
    if app_data is not None:
        found["dialplan"] = {"app_name": "Stasis", "app_data": app_data}
    rest.get_channel.return_value = found
    rest.get_variable.return_value = ""
    store = mock.Mock()
    store.stored_for_channel.return_value = False
    storing = mock.Mock()
    calls = CallRegistry(
        profiles=Profiles(Settings(ivr=BASE, profiles=(SALES, NIGHT))),
        rest=rest,
        store=store,
        timers=mock.Mock(),
        submit=lambda channel, item: None,
        metrics=Metrics(),
        id_prefix="x",
        clock=lambda: MONDAY_NOON,
    )
    calls._storing = storing  # the request, as handed over
    return rest, storing, calls


def heard(rest: Any) -> str:
    return str(rest.play.call_args.args[2])


@pytest.mark.parametrize(
    ("args", "prompt", "profile"),
    [
        (("TIMEOUT", "queue=998"), "sound:custom/SALES", "sales"),
        (("TIMEOUT", "queue=999"), "sound:custom/IVR_DND_OPERATORS", "default"),
        (("TIMEOUT", "queue=998", "profile=default"), "sound:custom/IVR_DND_OPERATORS", "default"),
        (("TIMEOUT", "queue=999", "profile=SALES"), "sound:custom/SALES", "sales"),
        (("TIMEOUT",), "sound:custom/IVR_DND_OPERATORS", "default"),
    ],
)
def test_the_call_gets_its_profiles_prompt_and_the_crm_its_name(
    args: tuple[str, ...], prompt: str, profile: str
) -> None:
    rest, storing, calls = registry()
    calls.handle("c1", (0.0, 1, StasisStart(CHANNEL, args)))
    assert heard(rest) == prompt
    calls.handle("c1", (0.0, 1, ChannelDtmfReceived("1")))
    context = dict(storing.request.call_args.args[3])
    assert context["profile"] == profile


def test_each_profile_has_its_own_hours() -> None:
    rest, _storing, calls = registry()
    calls.handle("c1", (0.0, 1, StasisStart(CHANNEL, ("TIMEOUT", "profile=night"))))
    assert heard(rest) == "sound:custom/IVR_DND_CLOSED"
    calls.handle("c2", (0.0, 1, StasisStart(Channel("c2"), ("TIMEOUT", "queue=998"))))
    assert heard(rest) == "sound:custom/SALES"  # the default has no schedule, nor has sales


def test_an_unknown_profile_is_served_by_the_default_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rest, _storing, calls = registry()
    with caplog.at_level(logging.WARNING, logger="stasis_dnd"):
        for channel_id in ("c1", "c2"):
            start = StasisStart(Channel(channel_id), ("TIMEOUT", "queue=998", "profile=salse"))
            calls.handle(channel_id, (0.0, 1, start))
            assert heard(rest) == "sound:custom/IVR_DND_OPERATORS"
    warned = [r.getMessage() for r in caplog.records if "unknown_profile" in r.getMessage()]
    assert len(warned) == 1
    assert "profile='salse'" in warned[0] and "channel=c1" in warned[0]


def test_a_recovered_call_keeps_its_profile() -> None:
    rest, storing, calls = registry(app_data="")  # what Asterisk tells does not matter here
    calls.handle("c1", (0.0, 1, StasisStart(CHANNEL, ("TIMEOUT", "queue=998", "waited=7"))))
    calls.handle("c1", (0.0, 2, Recover(True, 2)))
    assert heard(rest) == "sound:custom/SALES"
    calls.handle("c1", (0.0, 2, ChannelDtmfReceived("1")))
    context = dict(storing.request.call_args.args[3])
    facts = (context["profile"], context["queue"], context["waited_seconds"])
    assert facts == ("sales", "998", "7")


def test_after_a_restart_the_channels_stasis_arguments_give_profile_and_facts_back() -> None:
    rest, storing, calls = registry(app_data="stasis-dnd,TIMEOUT,queue=998,waited=42")
    calls.handle("c1", (0.0, 1, Recover(True, 1)))
    assert heard(rest) == "sound:custom/SALES"
    calls.handle("c1", (0.0, 1, ChannelDtmfReceived("1")))
    context = dict(storing.request.call_args.args[3])
    assert (context["profile"], context["reason"], context["waited_seconds"]) == (
        "sales",
        "TIMEOUT",
        "42",
    )


def test_a_break_out_key_in_the_arguments_is_not_taken_again_on_recovery() -> None:
    rest, storing, calls = registry(app_data="stasis-dnd,breakout,1,queue=998")
    calls.handle("c1", (0.0, 1, Recover(True, 1)))
    assert heard(rest) == "sound:custom/SALES"  # the menu again, no request yet
    storing.request.assert_not_called()
