"""Calls outside business hours: every `outside_hours` policy, step by step
and through the conversation kit (the shell decides open or closed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stasis_dnd.core import (
    Answer,
    CallbackStored,
    CallFlow,
    CallRecovered,
    CancelTimer,
    Channel,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Command,
    ContinueInDialplan,
    DrainEnded,
    Ending,
    Hangup,
    Outcome,
    Play,
    PlaybackFinished,
    RequestCallback,
    StartTimer,
    StasisStart,
    State,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.settings import DEFAULT_CONTINUE, DialplanTarget, IvrSettings
from stasis_dnd.testing import Conversation

CH = Channel("ch1", "Up", "", "+79001234567", "ru")
PROMPT = "sound:custom/IVR_DND_OPERATORS"
CLOSED = "sound:custom/IVR_DND_CLOSED"
NEXT_DAY = "sound:custom/IVR_DND_CALLBACK_NEXT_DAY"
CONFIRMED = "sound:custom/IVR_DND_CALLBACK_CONFIRMED"
GOODBYE = "sound:vm-goodbye"
VOICEMAIL = DialplanTarget("dnd-closed", "s", "1")


def ivr(**changes: Any) -> IvrSettings:
    return replace(IvrSettings(readback=False), **changes)


def play(playback_id: str, media: str, start: float = 5.0) -> list[Command]:
    return [Play(playback_id, media, "ru"), StartTimer(playback_id + "-start", start)]


# --- continue ---------------------------------------------------------------


@pytest.mark.parametrize("state", ["Up", "Ring"])
def test_continue_hands_the_call_to_the_dialplan_at_once_unanswered(state: str) -> None:
    flow = CallFlow(ivr(outside_hours="continue"))
    commands = flow.handle(StasisStart(replace(CH, state=state), ("TIMEOUT",), open=False))
    assert commands == [ContinueInDialplan(DEFAULT_CONTINUE)]
    assert (flow.outcome, flow.ending) == (Outcome.CLOSED, Ending.CONTINUED)


def test_continue_goes_to_closed_continue_to_even_after_a_breakout() -> None:
    flow = CallFlow(ivr(outside_hours="continue", closed_continue_to=VOICEMAIL))
    assert flow.handle(StasisStart(CH, ("breakout", "1"), open=False)) == [
        ContinueInDialplan(VOICEMAIL)
    ]


def test_continue_within_hours_changes_nothing() -> None:
    flow = CallFlow(ivr(outside_hours="continue"))
    assert flow.handle(StasisStart(CH, ("TIMEOUT",))) == play("ch1-p1", PROMPT)


# --- announce ---------------------------------------------------------------


def test_announce_plays_the_closed_message_goodbye_and_hangs_up() -> None:
    flow = CallFlow(ivr(outside_hours="announce"))
    assert flow.handle(StasisStart(CH, ("TIMEOUT",), open=False)) == play("ch1-p1", CLOSED)
    assert (flow.state, flow.outcome) == (State.CLOSED, Outcome.CLOSED)
    assert flow.handle(ChannelDtmfReceived("1")) == []  # no menu: the key means nothing
    assert flow.handle(PlaybackFinished("old")) == []  # not ours
    assert flow.handle(PlaybackFinished("ch1-p1")) == [
        CancelTimer("ch1-p1-start"),
        *play("ch1-p2", GOODBYE),
    ]
    assert flow.handle(PlaybackFinished("ch1-p2")) == [CancelTimer("ch1-p2-start"), Hangup()]
    assert (flow.outcome, flow.ending, flow.callback_requested) == (
        Outcome.CLOSED,
        Ending.HUNG_UP,
        False,
    )


def test_announce_answers_and_pauses_first_and_ignores_a_breakout() -> None:
    flow = CallFlow(ivr(outside_hours="announce"))
    ringing = replace(CH, state="Ring")
    assert flow.handle(StasisStart(ringing, ("breakout", "1"), open=False)) == [
        Answer(),
        StartTimer("ch1-pause1", 1.0),
    ]
    assert flow.handle(TimerFired("ch1-pause1")) == play("ch1-p2", CLOSED)


def test_announce_reaches_a_caller_without_a_number_too() -> None:
    flow = CallFlow(ivr(outside_hours="announce"))
    assert flow.handle(StasisStart(replace(CH, caller_number=""), (), open=False)) == play(
        "ch1-p1", CLOSED
    )


def test_a_closed_message_that_fails_or_sticks_still_leads_to_goodbye() -> None:
    flow = CallFlow(ivr(outside_hours="announce"))
    flow.handle(StasisStart(CH, (), open=False))
    assert flow.handle(PlaybackFinished("ch1-p1", "failed"))[1:] == play("ch1-p2", GOODBYE)
    stuck = CallFlow(ivr(outside_hours="announce"))
    stuck.handle(StasisStart(CH, (), open=False))
    assert stuck.handle(TimerFired("ch1-p1-start")) == [
        StopPlayback("ch1-p1"),
        *play("ch1-p2", GOODBYE),
    ]
    assert stuck.warning is not None and "closed playback" in stuck.warning


def test_shutdown_during_the_closed_message_continues_to_the_out_of_hours_target() -> None:
    flow = CallFlow(ivr(outside_hours="announce", closed_continue_to=VOICEMAIL))
    flow.handle(StasisStart(CH, (), open=False))
    assert flow.continue_target() == VOICEMAIL  # where a fail-safe sends it, too
    assert flow.handle(DrainEnded()) == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-start"),
        ContinueInDialplan(VOICEMAIL),
    ]
    assert flow.outcome is Outcome.CLOSED


def test_a_caller_hanging_up_on_the_closed_message_stays_closed() -> None:
    flow = CallFlow(ivr(outside_hours="announce"))
    flow.handle(StasisStart(CH, (), open=False))
    assert flow.handle(ChannelHangupRequest()) == []
    assert (flow.outcome, flow.ending) == (Outcome.CLOSED, Ending.CALLER_GONE)


# --- offer ------------------------------------------------------------------


def stored_outside_hours(settings: IvrSettings, **answer: bool) -> tuple[CallFlow, list[Command]]:
    flow = CallFlow(settings)
    flow.handle(StasisStart(CH, ("breakout", "1"), open=False))
    assert flow.state is State.STORING
    return flow, flow.handle(CallbackStored(**answer))


def test_offer_takes_the_request_and_promises_the_next_working_day() -> None:
    flow = CallFlow(ivr())  # offer is the default
    assert flow.handle(StasisStart(CH, ("TIMEOUT",), open=False)) == play("ch1-p1", PROMPT)
    commands = flow.handle(ChannelDtmfReceived("1"))
    assert [c.phone for c in commands if isinstance(c, RequestCallback)] == ["+79001234567"]
    assert flow.handle(CallbackStored())[1:] == play("ch1-p3", NEXT_DAY)
    assert flow.outcome is Outcome.CALLBACK


def test_within_hours_the_usual_confirmation_plays() -> None:
    flow = CallFlow(ivr())
    flow.handle(StasisStart(CH, ("breakout", "1")))
    assert flow.handle(CallbackStored())[1:] == play("ch1-p2", CONFIRMED)


def test_offer_outside_hours_keeps_already_requested_and_an_empty_prompt_falls_back() -> None:
    _, commands = stored_outside_hours(ivr(), already_requested=True)
    assert commands[1:] == play("ch1-p2", "sound:custom/IVR_DND_ALREADY_REQUESTED")
    _, commands = stored_outside_hours(ivr(next_day_confirmation=""))
    assert commands[1:] == play("ch1-p2", CONFIRMED)


# --- recovery -----------------------------------------------------------------


@pytest.mark.parametrize("policy", ["offer", "announce", "continue"])
def test_a_recovered_caller_whose_request_is_stored_hears_goodbye_open_or_not(
    policy: str,
) -> None:
    flow = CallFlow(ivr(outside_hours=policy))
    recovered = CallRecovered(CH, callback_stored=True, open=False)
    assert flow.handle(recovered) == play("ch1-p1", GOODBYE, 120.0)
    assert flow.outcome is Outcome.CALLBACK


def test_a_recovered_call_outside_hours_is_judged_afresh() -> None:
    flow = CallFlow(ivr(outside_hours="announce"))
    assert flow.handle(CallRecovered(CH, open=False)) == play("ch1-p1", CLOSED, 120.0)
    continued = CallFlow(ivr(outside_hours="continue"))
    assert continued.handle(CallRecovered(CH, open=False)) == [ContinueInDialplan(DEFAULT_CONTINUE)]


# --- through the conversation kit ----------------------------------------------


def test_kit_announce_outside_hours() -> None:
    call = Conversation(ivr(outside_hours="announce"), state="Ring", open=False)
    call.expect_answer()
    call.expect_closed()
    call.press("1")
    call.expect_goodbye()
    call.expect_hangup()
    call.expect_nothing_more()
    assert call.callback_requests == []
    assert call.flow.outcome is Outcome.CLOSED


def test_kit_continue_outside_hours() -> None:
    call = Conversation(ivr(outside_hours="continue", closed_continue_to=VOICEMAIL), open=False)
    call.expect_continue("dnd-closed,s,1")
    call.expect_nothing_more()
    assert call.flow.outcome is Outcome.CLOSED


def test_kit_offer_outside_hours_with_the_read_back() -> None:
    call = Conversation(IvrSettings(), open=False)
    call.expect_prompt()
    call.press("1")
    call.expect_readback("+79001234567")
    call.press("1")
    call.expect_callback("+79001234567")
    call.expect_next_day_confirmation()
    call.expect_goodbye()
    call.expect_hangup()


def test_kit_a_call_within_hours_hears_the_usual_confirmation() -> None:
    call = Conversation(ivr(outside_hours="announce"), args=("breakout", "1"))
    call.expect_callback("+79001234567")
    call.expect_confirmation()
    call.expect_goodbye()
    call.expect_hangup()


def test_kit_recovered_outside_hours() -> None:
    call = Conversation(ivr(outside_hours="announce"), recovered=True, open=False)
    call.expect_closed()
    call.expect_goodbye()
    call.expect_hangup()


def test_shutdown_during_the_pause_before_the_closed_message_goes_out_of_hours_too() -> None:
    flow = CallFlow(ivr(outside_hours="announce", closed_continue_to=VOICEMAIL))
    flow.handle(StasisStart(replace(CH, state="Ring"), (), open=False))
    assert flow.handle(DrainEnded()) == [CancelTimer("ch1-pause1"), ContinueInDialplan(VOICEMAIL)]
