"""Every transition of the call flow: feed events, assert the exact commands."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stasis_dnd.core import (
    Answer,
    CallbackNotStored,
    CallbackStored,
    CallFlow,
    CallRecovered,
    CancelTimer,
    Channel,
    ChannelDtmfReceived,
    ChannelGone,
    ChannelHangupRequest,
    Command,
    ContinueInDialplan,
    DrainEnded,
    Ending,
    Hangup,
    Outcome,
    Play,
    PlaybackFinished,
    PlaybackStarted,
    RequestCallback,
    StartTimer,
    StasisEnd,
    StasisStart,
    State,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.settings import DialplanTarget, IvrSettings

# The flow without read-back, number entry or confirmation: the original's
# steps, which these tests pin (test_number_steps.py covers the rest).
SIMPLE = IvrSettings(readback=False, hidden_number_entry=False, confirmation="")


def simple(**changes: Any) -> IvrSettings:
    return replace(SIMPLE, **changes)


CH = Channel("ch1", "Up", "Ivan", "+7 900 123-45-67", "ru")
# What the CRM may learn of a call on CH (core.context): the channel's facts.
FACTS = (("language", "ru"), ("uniqueid", "ch1"))
# The flow adds the profile it serves as a fact of its own (here: the default).
BREAKOUT_FACTS = (("reason", "breakout"), *FACTS, ("profile", "default"))
TIMEOUT_FACTS = (("reason", "TIMEOUT"), *FACTS, ("profile", "default"))
PROMPT = "sound:custom/IVR_DND_OPERATORS"
SORRY = "sound:sorry-youre-having-problems"
GOODBYE = "sound:vm-goodbye"


def play(playback_id: str, media: str) -> list[Command]:
    """What the flow issues to play `media`: the playback and its start watchdog."""
    return [Play(playback_id, media, "ru"), StartTimer(playback_id + "-start", 5.0)]


def off(playback_id: str) -> CancelTimer:
    """The start watchdog of a playback that ended (no PlaybackStarted seen), called off."""
    return CancelTimer(playback_id + "-start")


MENU_TARGET = ContinueInDialplan(DialplanTarget("dnd-fallback", "s", "1"))
STORED_TARGET = ContinueInDialplan(DialplanTarget("dnd-fallback", "hang", "1"))


def started(settings: IvrSettings | None = None, channel: Channel = CH) -> CallFlow:
    """A flow whose menu prompt (playback ch1-p1) is playing."""
    flow = CallFlow(settings or SIMPLE)
    assert flow.handle(StasisStart(channel, ("TIMEOUT",))) == play("ch1-p1", PROMPT)
    return flow


def waiting(settings: IvrSettings | None = None) -> CallFlow:
    """A flow waiting for a key after the prompt (digit timer ch1-digit2)."""
    flow = started(settings)
    assert flow.handle(PlaybackFinished("ch1-p1")) == [off("ch1-p1"), StartTimer("ch1-digit2", 3.0)]
    return flow


# --- start -----------------------------------------------------------------


def test_answered_channel_hears_the_prompt_at_once() -> None:
    flow = started()
    assert flow.state is State.MENU
    assert flow.playing == "ch1-p1"
    assert flow.phone == "+79001234567"
    assert flow.ending is None


def test_ringing_channel_is_answered_then_paused_then_prompted() -> None:
    flow = CallFlow(SIMPLE)
    ringing = replace(CH, state="Ring")
    assert flow.handle(StasisStart(ringing, ())) == [Answer(), StartTimer("ch1-pause1", 1.0)]
    assert flow.handle(ChannelDtmfReceived("1")) == []  # Wait() ignores keys too
    assert flow.handle(TimerFired("other")) == []
    assert flow.handle(TimerFired("ch1-pause1")) == play("ch1-p2", PROMPT)


def test_no_pause_configured_plays_right_after_answer() -> None:
    flow = CallFlow(simple(answer_pause=0))
    ringing = replace(CH, state="Ringing")
    assert flow.handle(StasisStart(ringing, ())) == [Answer(), *play("ch1-p1", PROMPT)]


@pytest.mark.parametrize("number", ["", "anonymous", "Unknown", "restricted", "12", "1&a=2"])
def test_unusable_caller_id_gets_sorry_not_an_offer(number: str) -> None:
    flow = CallFlow(SIMPLE)
    channel = replace(CH, caller_number=number)
    assert flow.handle(StasisStart(channel, ())) == play("ch1-p1", SORRY)
    assert flow.handle(PlaybackFinished("ch1-p1")) == [off("ch1-p1"), *play("ch1-p2", GOODBYE)]
    assert flow.handle(PlaybackFinished("ch1-p2")) == [off("ch1-p2"), Hangup()]
    assert flow.outcome is Outcome.NO_CALLERID
    assert flow.ending is Ending.HUNG_UP


def test_callerid_from_name_as_the_original_did() -> None:
    flow = CallFlow(simple(callerid_source="name"))
    channel = replace(CH, caller_name="8 (900) 111-22-33", caller_number="100")
    flow.handle(StasisStart(channel, ()))
    assert flow.phone == "89001112233"


def test_callerid_number_then_name() -> None:
    flow = CallFlow(simple(callerid_source="number_then_name"))
    channel = replace(CH, caller_name="+7 900 1112233", caller_number="anonymous")
    flow.handle(StasisStart(channel, ()))
    assert flow.phone == "+79001112233"


def test_breakout_goes_straight_to_the_callback() -> None:
    flow = CallFlow(SIMPLE)
    assert flow.handle(StasisStart(CH, ("breakout", "1"))) == [
        RequestCallback("+79001234567", context=BREAKOUT_FACTS),
        StartTimer("ch1-store1", 10.0),
    ]
    assert flow.state is State.STORING


def test_breakout_on_a_ringing_channel_answers_and_pauses_first() -> None:
    flow = CallFlow(SIMPLE)
    event = StasisStart(replace(CH, state="Ring"), ("BREAKOUT", "1"))
    assert flow.handle(event) == [Answer(), StartTimer("ch1-pause1", 1.0)]
    assert flow.handle(TimerFired("ch1-pause1")) == [
        RequestCallback("+79001234567", context=BREAKOUT_FACTS),
        StartTimer("ch1-store2", 10.0),
    ]


def test_breakout_with_another_key_hears_the_menu() -> None:
    flow = CallFlow(SIMPLE)
    assert flow.handle(StasisStart(CH, ("breakout", "5"))) == play("ch1-p1", PROMPT)


# --- the menu --------------------------------------------------------------


def test_key_during_prompt_stops_it_and_requests_the_callback() -> None:
    flow = started()
    # Once it has started, the prompt's watchdog waits for its end instead.
    assert flow.handle(PlaybackStarted("ch1-p1")) == [
        off("ch1-p1"),
        StartTimer("ch1-p1-watchdog", 120.0),
    ]
    assert flow.handle(PlaybackStarted("ch1-p1")) == []  # a repeated report
    assert flow.handle(ChannelDtmfReceived("1")) == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-watchdog"),
        RequestCallback("+79001234567", context=TIMEOUT_FACTS),
        StartTimer("ch1-store2", 10.0),
    ]
    # The stopped prompt reports its end later: expected, nothing to do.
    assert flow.handle(PlaybackFinished("ch1-p1")) == []
    assert flow.handle(ChannelDtmfReceived("1")) == []
    assert flow.handle(PlaybackStarted("ch1-p1")) == []  # late news of the stopped prompt
    assert flow.handle(CallbackStored()) == [CancelTimer("ch1-store2"), *play("ch1-p3", GOODBYE)]
    assert flow.handle(PlaybackStarted("ch1-p3")) == [
        off("ch1-p3"),
        StartTimer("ch1-p3-watchdog", 120.0),
    ]
    assert flow.handle(ChannelDtmfReceived("2")) == []
    assert flow.handle(PlaybackFinished("ch1-p3")) == [CancelTimer("ch1-p3-watchdog"), Hangup()]
    assert flow.outcome is Outcome.CALLBACK
    assert flow.ending is Ending.HUNG_UP


def test_key_after_prompt_cancels_the_timer() -> None:
    flow = waiting()
    assert flow.handle(ChannelDtmfReceived("1")) == [
        CancelTimer("ch1-digit2"),
        RequestCallback("+79001234567", context=TIMEOUT_FACTS),
        StartTimer("ch1-store3", 10.0),
    ]


def test_wrong_key_gets_sorry_and_goodbye() -> None:
    flow = waiting()
    assert flow.handle(ChannelDtmfReceived("7")) == [
        CancelTimer("ch1-digit2"),
        *play("ch1-p3", SORRY),
    ]
    assert flow.handle(PlaybackFinished("ch1-p3", "failed")) == [
        off("ch1-p3"),
        *play("ch1-p4", GOODBYE),
    ]
    assert flow.handle(PlaybackFinished("ch1-p4")) == [off("ch1-p4"), Hangup()]
    assert flow.outcome is Outcome.INVALID


def test_wrong_key_during_prompt() -> None:
    flow = started()
    assert flow.handle(ChannelDtmfReceived("#")) == [
        StopPlayback("ch1-p1"),
        off("ch1-p1"),
        *play("ch1-p2", SORRY),
    ]
    assert flow.handle(PlaybackFinished("ch1-p1")) == []  # the stopped prompt


def test_silence_times_out() -> None:
    flow = waiting()
    assert flow.handle(TimerFired("stale")) == []
    assert flow.handle(PlaybackFinished("ch1-p1")) == []
    assert flow.handle(TimerFired("ch1-digit2")) == play("ch1-p3", SORRY)
    assert flow.outcome is Outcome.TIMEOUT


def test_custom_digit_and_timeout() -> None:
    flow = started(simple(accept_digit="5", digit_timeout=7))
    assert flow.handle(PlaybackFinished("ch1-p1")) == [off("ch1-p1"), StartTimer("ch1-digit2", 7)]
    assert flow.handle(ChannelDtmfReceived("5")) == [
        CancelTimer("ch1-digit2"),
        RequestCallback("+79001234567", context=TIMEOUT_FACTS),
        StartTimer("ch1-store3", 10.0),
    ]


def test_attempts_repeat_the_menu_after_a_notice() -> None:
    flow = waiting(simple(attempts=2, invalid_prompt="option-is-invalid"))
    assert flow.handle(ChannelDtmfReceived("9")) == [
        CancelTimer("ch1-digit2"),
        *play("ch1-p3", "sound:option-is-invalid"),
    ]
    assert flow.state is State.NOTICE
    assert flow.handle(PlaybackFinished("other")) == []
    assert flow.handle(PlaybackFinished("ch1-p3", "failed")) == [
        off("ch1-p3"),
        *play("ch1-p4", PROMPT),
    ]
    assert flow.handle(PlaybackFinished("ch1-p4")) == [off("ch1-p4"), StartTimer("ch1-digit5", 3.0)]
    assert flow.handle(TimerFired("ch1-digit5")) == play("ch1-p6", SORRY)
    assert flow.outcome is Outcome.TIMEOUT


def test_key_during_the_notice_counts_as_the_answer() -> None:
    flow = waiting(simple(attempts=3, invalid_prompt="option-is-invalid"))
    flow.handle(TimerFired("ch1-digit2"))
    assert flow.handle(ChannelDtmfReceived("1")) == [
        StopPlayback("ch1-p3"),
        off("ch1-p3"),
        RequestCallback("+79001234567", context=TIMEOUT_FACTS),
        StartTimer("ch1-store4", 10.0),
    ]


def test_attempts_without_notice_repeat_the_menu_at_once() -> None:
    flow = waiting(simple(attempts=2))
    assert flow.handle(TimerFired("ch1-digit2")) == play("ch1-p3", PROMPT)
    assert flow.state is State.MENU


# --- the callback ----------------------------------------------------------


def test_confirmation_is_played_after_the_request_is_stored() -> None:
    flow = waiting(simple(confirmation="custom/IVR_DND_CALLBACK_CONFIRMED"))
    flow.handle(ChannelDtmfReceived("1"))
    assert flow.handle(CallbackStored()) == [
        CancelTimer("ch1-store3"),
        *play("ch1-p4", "sound:custom/IVR_DND_CALLBACK_CONFIRMED"),
    ]
    assert flow.state is State.CONFIRMING
    assert flow.handle(PlaybackFinished("other")) == []
    assert flow.handle(PlaybackFinished("ch1-p4")) == [off("ch1-p4"), *play("ch1-p5", GOODBYE)]


def test_request_that_cannot_be_stored_gets_sorry_not_a_promise() -> None:
    flow = waiting()
    flow.handle(ChannelDtmfReceived("1"))
    assert flow.handle(CallbackNotStored("disk full")) == [
        CancelTimer("ch1-store3"),
        *play("ch1-p4", SORRY),
    ]
    assert flow.outcome is Outcome.CALLBACK_FAILED
    assert not flow.callback_stored


def test_storing_that_hangs_past_store_timeout_gets_sorry() -> None:
    flow = waiting(simple(store_timeout=4))
    assert flow.handle(ChannelDtmfReceived("1"))[-1] == StartTimer("ch1-store3", 4)
    assert flow.handle(TimerFired("stale")) == []
    assert flow.state is State.STORING
    assert flow.handle(TimerFired("ch1-store3")) == play("ch1-p4", SORRY)
    assert flow.outcome is Outcome.CALLBACK_FAILED
    assert flow.warning is not None and "not stored within 4 s" in flow.warning
    # The late answer: no promise now, but a hand-back must not offer the menu again.
    assert flow.handle(CallbackStored()) == []
    assert flow.anomaly is None
    assert flow.callback_stored
    assert flow.handle(DrainEnded()) == [StopPlayback("ch1-p4"), off("ch1-p4"), STORED_TARGET]


def test_late_failure_after_store_timeout_changes_nothing() -> None:
    flow = waiting()
    flow.handle(ChannelDtmfReceived("1"))
    flow.handle(TimerFired("ch1-store3"))
    assert flow.handle(CallbackNotStored("disk")) == []
    assert flow.anomaly is None
    assert flow.handle(PlaybackFinished("ch1-p4")) == [off("ch1-p4"), *play("ch1-p5", GOODBYE)]
    assert flow.handle(CallbackStored()) == []  # still in time for goodbye
    assert flow.callback_stored


def test_media_uris_pass_through() -> None:
    flow = CallFlow(simple(prompt="recording:dnd-menu"))
    assert flow.handle(StasisStart(CH, ())) == play("ch1-p1", "recording:dnd-menu")


def test_id_prefix_keeps_ids_of_a_restarted_flow_apart() -> None:
    flow = CallFlow(id_prefix="r2-")
    assert flow.handle(StasisStart(CH, ())) == play("r2-ch1-p1", PROMPT)


# --- prompt failure --------------------------------------------------------


def test_failed_prompt_continues_in_dialplan_by_default() -> None:
    flow = started()
    assert flow.handle(PlaybackFinished("ch1-p1", "failed")) == [
        off("ch1-p1"),
        MENU_TARGET,
    ]
    assert flow.outcome is Outcome.PROMPT_FAILED
    assert flow.ending is Ending.CONTINUED
    assert flow.handle(StasisEnd()) == []


def test_failed_prompt_can_say_sorry() -> None:
    flow = started(simple(on_prompt_failure="sorry"))
    assert flow.handle(PlaybackFinished("ch1-p1", "failed")) == [
        off("ch1-p1"),
        *play("ch1-p2", SORRY),
    ]
    assert flow.outcome is Outcome.PROMPT_FAILED


def test_failed_prompt_can_wait_for_a_key_anyway() -> None:
    flow = started(simple(on_prompt_failure="wait"))
    assert flow.handle(PlaybackFinished("ch1-p1", "failed")) == [
        off("ch1-p1"),
        StartTimer("ch1-digit2", 3.0),
    ]
    assert flow.state is State.WAITING
    assert flow.outcome is None


# --- hang-up ---------------------------------------------------------------


@pytest.mark.parametrize("gone", [ChannelHangupRequest(), StasisEnd(), ChannelGone()])
def test_hangup_during_prompt_commands_nothing(gone: object) -> None:
    flow = started()
    assert flow.handle(gone) == []  # type: ignore[arg-type]
    assert flow.ending is Ending.CALLER_GONE
    assert flow.outcome is Outcome.ABANDONED
    for late in (PlaybackFinished("ch1-p1"), StasisEnd(), ChannelDtmfReceived("1"), DrainEnded()):
        assert flow.handle(late) == []
    assert not flow.callback_requested


def test_hangup_while_storing_keeps_the_request() -> None:
    flow = waiting()
    flow.handle(ChannelDtmfReceived("1"))
    assert flow.handle(ChannelHangupRequest()) == []
    assert flow.handle(CallbackStored()) == []
    assert flow.handle(CallbackNotStored()) == []
    assert flow.outcome is Outcome.CALLBACK
    assert flow.callback_requested


def test_hangup_before_start() -> None:
    flow = CallFlow(SIMPLE)
    assert flow.handle(StasisEnd()) == []
    assert flow.ending is Ending.CALLER_GONE


def test_after_our_hangup_everything_is_late_news() -> None:
    flow = waiting()
    flow.handle(TimerFired("ch1-digit2"))
    flow.handle(PlaybackFinished("ch1-p3"))
    assert flow.handle(PlaybackFinished("ch1-p4")) == [off("ch1-p4"), Hangup()]
    for late in (ChannelHangupRequest(), StasisEnd(), TimerFired("x"), CallbackStored()):
        assert flow.handle(late) == []
        assert flow.anomaly is None
    assert flow.ending is Ending.HUNG_UP


def test_stale_playbacks_in_sorry_and_goodbye_are_ignored() -> None:
    flow = waiting()
    flow.handle(TimerFired("ch1-digit2"))
    assert flow.handle(PlaybackFinished("old")) == []
    flow.handle(PlaybackFinished("ch1-p3"))
    assert flow.handle(PlaybackFinished("old")) == []
    assert flow.state is State.GOODBYE


# --- recovery and shutdown -------------------------------------------------


def behind_old(playback_id: str, media: str) -> list[Command]:
    """The first play after a recovery: it may wait behind the old instance's prompt."""
    return [Play(playback_id, media, "ru"), StartTimer(playback_id + "-start", 120.0)]


def test_recovered_call_with_stored_callback_hears_goodbye() -> None:
    flow = CallFlow(id_prefix="r1-")
    assert flow.handle(CallRecovered(CH, callback_stored=True)) == behind_old("r1-ch1-p1", GOODBYE)
    assert flow.outcome is Outcome.CALLBACK


def test_recovered_call_without_callback_starts_again() -> None:
    flow = CallFlow(SIMPLE)
    assert flow.handle(CallRecovered(CH)) == behind_old("ch1-p1", PROMPT)
    # Only the first play waits that long to start; the next ones have the short bound.
    assert flow.handle(PlaybackFinished("ch1-p1", "done"))[-1] == StartTimer("ch1-digit2", 3.0)
    assert flow.handle(TimerFired("ch1-digit2")) == play("ch1-p3", SORRY)


def test_drain_stops_the_prompt_and_continues() -> None:
    flow = started()
    assert flow.handle(DrainEnded()) == [
        StopPlayback("ch1-p1"),
        off("ch1-p1"),
        MENU_TARGET,
    ]
    assert flow.outcome is Outcome.SHUTDOWN
    assert flow.ending is Ending.CONTINUED


def test_drain_cancels_the_digit_timer() -> None:
    flow = waiting()
    assert flow.handle(DrainEnded()) == [CancelTimer("ch1-digit2"), MENU_TARGET]


def test_drain_while_storing_waits_for_the_answer_then_continues_to_goodbye() -> None:
    flow = waiting()
    flow.handle(ChannelDtmfReceived("1"))
    assert flow.handle(DrainEnded()) == []  # the answer decides where the call goes
    assert flow.state is State.STORING
    assert flow.handle(CallbackStored()) == [CancelTimer("ch1-store3"), STORED_TARGET]
    assert flow.outcome is Outcome.CALLBACK
    assert flow.ending is Ending.CONTINUED


def test_drain_while_storing_a_request_that_failed_continues_to_the_menu() -> None:
    flow = waiting()
    flow.handle(ChannelDtmfReceived("1"))
    flow.handle(DrainEnded())
    assert flow.handle(CallbackNotStored("disk full")) == [CancelTimer("ch1-store3"), MENU_TARGET]
    assert flow.outcome is Outcome.CALLBACK_FAILED


def test_drain_while_storing_is_bounded_by_the_store_timeout() -> None:
    flow = waiting()
    flow.handle(ChannelDtmfReceived("1"))
    flow.handle(DrainEnded())
    assert flow.handle(TimerFired("ch1-store3")) == [MENU_TARGET]
    assert flow.ending is Ending.CONTINUED


def test_drain_after_the_request_is_stored_continues_to_goodbye_not_the_menu() -> None:
    flow = waiting(simple(confirmation="custom/IVR_DND_CALLBACK_CONFIRMED"))
    flow.handle(ChannelDtmfReceived("1"))
    flow.handle(CallbackStored())  # the confirmation (ch1-p4) plays
    assert flow.handle(DrainEnded()) == [StopPlayback("ch1-p4"), off("ch1-p4"), STORED_TARGET]
    assert flow.outcome is Outcome.CALLBACK


def test_continue_targets_are_configurable_and_none_means_after_stasis() -> None:
    settings = simple(continue_to=None, continue_stored_to=DialplanTarget("bye", "s", "done"))
    flow = waiting(settings)
    assert flow.handle(DrainEnded()) == [CancelTimer("ch1-digit2"), ContinueInDialplan()]
    flow = waiting(settings)
    flow.handle(ChannelDtmfReceived("1"))
    flow.handle(CallbackStored())
    assert flow.handle(DrainEnded())[-1] == ContinueInDialplan(DialplanTarget("bye", "s", "done"))


def test_recovered_stored_caller_during_shutdown_continues_to_goodbye() -> None:
    flow = CallFlow(SIMPLE)
    flow.handle(DrainEnded())
    assert flow.handle(CallRecovered(CH, callback_stored=True)) == [STORED_TARGET]
    assert flow.outcome is Outcome.CALLBACK


# --- anomalies -------------------------------------------------------------


def test_unexpected_event_is_reported_not_raised() -> None:
    flow = started()
    assert flow.handle(CallbackStored()) == []
    assert flow.anomaly == "can't handle CallbackStored in state menu"
    assert flow.handle(StasisStart(CH, ())) == []
    assert flow.anomaly == "can't handle StasisStart in state menu"
    assert flow.handle(ChannelDtmfReceived("1")) != []
    assert flow.anomaly is None


def test_caller_arriving_during_shutdown_goes_back_to_the_dialplan() -> None:
    flow = CallFlow(SIMPLE)
    assert flow.handle(DrainEnded()) == []
    assert flow.anomaly is None
    assert flow.handle(StasisStart(replace(CH, state="Ring"), ())) == [MENU_TARGET]
    assert flow.outcome is Outcome.SHUTDOWN
    assert flow.ending is Ending.CONTINUED
