"""The number to call: read-back and confirmation, keying in another number,
hidden caller ids, and a number that already has a request."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stasis_dnd.core import (
    CallbackStored,
    CallFlow,
    CancelTimer,
    Channel,
    ChannelDtmfReceived,
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
from stasis_dnd.core.callerid import callback_number
from stasis_dnd.settings import DEFAULT_NUMBER_PATTERN, IvrSettings
from stasis_dnd.testing import Conversation

NUMBER = "+79001234567"
RU_RULES = ((r"8(\d{10})", r"+7\1"), (r"7(\d{10})", r"+7\1"))


def state(flow: CallFlow) -> State:
    """The flow's state now (a call, so the type checker does not narrow it)."""
    return flow.state


def settings(**changes: Any) -> IvrSettings:
    return replace(IvrSettings(), **changes)


KIT_OPTIONS = {"sound_seconds", "missing_sounds", "stuck_sounds", "callbacks"}


def call(number: str = NUMBER, **changes: Any) -> Conversation:
    """A call whose menu prompt has played and whose caller pressed 1;
    `changes` are [ivr] settings, or options of the conversation kit."""
    kit = {k: v for k, v in changes.items() if k in KIT_OPTIONS}
    ivr = settings(**{k: v for k, v in changes.items() if k not in KIT_OPTIONS})
    conversation = Conversation(ivr, number=number, **kit)
    conversation.expect_prompt()
    conversation.press("1")
    return conversation


# --- read-back -----------------------------------------------------------------


def test_read_back_is_one_playback_of_prompt_number_and_menu() -> None:
    flow = CallFlow()
    flow.handle(StasisStart(Channel("ch1", caller_number="+7 (900) 123-45-67", language="ru")))
    commands = flow.handle(ChannelDtmfReceived("1"))
    digits = "".join(f"sound:digits/{digit}," for digit in "79001234567")
    media = f"sound:custom/IVR_DND_READBACK,{digits}sound:custom/IVR_DND_READBACK_MENU"
    assert commands == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-start"),
        Play("ch1-p2", media, "ru"),
        StartTimer("ch1-p2-start", 5.0),
    ]
    assert state(flow) is State.READBACK
    # After it, one digit_timeout to answer.
    assert flow.handle(PlaybackFinished("ch1-p2")) == [
        CancelTimer("ch1-p2-start"),
        StartTimer("ch1-confirm3", 3.0),
    ]
    assert state(flow) is State.CONFIRM_WAIT


def test_confirm_key_files_the_request_then_confirmation_and_goodbye() -> None:
    conversation = call()
    conversation.expect_readback(NUMBER)
    conversation.wait(10)  # the read-back plays to its end; 3 s to answer
    conversation.press("1")
    conversation.expect_callback(NUMBER, caller_id="")
    conversation.expect_confirmation()
    conversation.expect_goodbye()
    conversation.expect_hangup()
    assert conversation.flow.outcome is Outcome.CALLBACK


def test_silence_after_the_read_back_confirms_after_exactly_digit_timeout() -> None:
    conversation = call(sound_seconds={})
    conversation.expect_readback(NUMBER)
    ends = conversation.now + 2 + 11 * 0.5 + 2  # prompt, eleven digits, menu
    conversation.wait(ends + 2.9 - conversation.now)
    assert conversation.callback_requests == []
    conversation.wait(0.1)
    assert conversation.callback_requests == [NUMBER]


def test_silence_does_not_confirm_when_so_configured() -> None:
    conversation = call(silence_confirms=False, confirm_attempts=2)
    conversation.expect_readback(NUMBER)
    conversation.expect_readback(NUMBER)  # silence: once more
    conversation.expect_sorry()  # and again: no request
    conversation.expect_goodbye()
    assert conversation.callback_requests == []
    assert conversation.flow.outcome is Outcome.NOT_CONFIRMED


def test_wrong_key_repeats_the_read_back_after_the_invalid_notice() -> None:
    conversation = call(invalid_prompt="option-is-invalid")
    conversation.expect_readback(NUMBER)
    conversation.press("5")
    conversation.expect_readback(NUMBER, after="option-is-invalid")
    conversation.press("5")
    conversation.expect_sorry()  # confirm_attempts = 2
    assert conversation.callback_requests == []


def test_a_read_back_that_cannot_be_played_still_files_the_request() -> None:
    # On Asterisk 22 a play of several sounds fails when its last one is missing.
    missing = call(missing_sounds=["custom/IVR_DND_READBACK_MENU"])
    missing.expect_readback(NUMBER)
    missing.expect_callback(NUMBER)
    assert missing.now == 2 + 11 * 0.5  # at once after the parts that played, no wait
    stuck = call(stuck_sounds=["custom/IVR_DND_READBACK"])
    stuck.expect_readback(NUMBER)
    stuck.expect_stop()  # the start watchdog gives up on it
    stuck.expect_callback(NUMBER)


def test_plus_is_not_read_out() -> None:
    conversation = call(number="+4930123456")
    play = conversation.expect_readback("4930123456")
    assert play.media.startswith("sound:custom/IVR_DND_READBACK,sound:digits/4,sound:digits/9,")


def test_read_back_off_files_the_request_at_once() -> None:
    conversation = call(readback=False)
    conversation.expect_callback(NUMBER)
    conversation.expect_confirmation()


# --- another number ------------------------------------------------------------


def test_change_key_then_a_new_number_sends_both_numbers() -> None:
    conversation = call()
    conversation.expect_readback(NUMBER)
    conversation.press("2")
    conversation.expect_stop()
    conversation.expect_entry_prompt()
    conversation.press("4951234567#")
    conversation.expect_readback("4951234567")
    conversation.press("1")
    conversation.expect_callback("4951234567", caller_id=NUMBER)


def test_keying_in_ones_own_number_sends_no_second_copy() -> None:
    conversation = call()
    conversation.expect_readback(NUMBER)
    conversation.press("2")
    conversation.expect_entry_prompt()
    conversation.press("89001234567#")
    conversation.expect_readback("89001234567")
    conversation.press("1")
    conversation.expect_callback("89001234567", caller_id=NUMBER)
    rewritten = call(number_rewrite=RU_RULES)
    rewritten.press("2")
    rewritten.press("89001234567#1")
    rewritten.expect_readback(NUMBER)
    rewritten.expect_entry_prompt()
    rewritten.expect_readback(NUMBER)
    rewritten.expect_callback(NUMBER, caller_id="")


def test_invalid_number_then_a_valid_one() -> None:
    conversation = call(readback=False, number="anonymous")
    conversation.expect_no_number()
    conversation.press("12345#")  # five digits: the default pattern wants six
    conversation.expect_number_invalid()
    conversation.press("123456#")
    conversation.expect_callback("123456", caller_id="")


def test_star_starts_over_without_using_up_an_attempt() -> None:
    conversation = call(readback=False, number="", entry_attempts=1)
    conversation.expect_no_number()
    conversation.press("999*")
    conversation.expect_stop()
    conversation.expect_entry_prompt()  # again, without the notice
    conversation.press("4951234567#")
    conversation.expect_callback("4951234567")


def test_too_many_invalid_numbers_get_sorry_at_exactly_entry_attempts() -> None:
    conversation = call(number="", entry_attempts=2)
    conversation.expect_no_number()
    conversation.press("1#")
    conversation.expect_number_invalid()
    conversation.press("2#")
    conversation.expect_sorry()
    conversation.expect_goodbye()
    assert conversation.callback_requests == []
    assert conversation.flow.outcome is Outcome.INVALID_NUMBER


def test_each_change_counts_as_an_entry_attempt() -> None:
    conversation = call(entry_attempts=1)
    conversation.press("2")
    conversation.press("4951234567#")
    conversation.press("2")  # a second number is one too many
    conversation.expect_readback(NUMBER)
    conversation.expect_entry_prompt()
    conversation.expect_readback("4951234567")
    conversation.expect_sorry()


def test_silence_after_some_digits_takes_them_after_entry_digit_timeout() -> None:
    conversation = call(readback=False, number="", sound_seconds={})
    conversation.expect_no_number()
    conversation.wait(4)  # the notice and the entry prompt have played
    conversation.press("4951234567")
    conversation.wait(4.9)
    assert conversation.callback_requests == []
    conversation.wait(0.1)
    assert conversation.callback_requests == ["4951234567"]


def test_silence_without_digits_asks_again_and_counts() -> None:
    conversation = call(number="", entry_attempts=2)
    conversation.expect_no_number()
    conversation.expect_entry_prompt()  # 5 s of nothing: asked again
    conversation.expect_sorry()  # and again: that was the last try
    assert conversation.flow.outcome is Outcome.INVALID_NUMBER


def test_hash_alone_asks_again() -> None:
    conversation = call(number="")
    conversation.expect_no_number()
    conversation.press("#")
    conversation.expect_stop()
    conversation.expect_entry_prompt()


def test_entry_ends_by_itself_at_entry_max_digits() -> None:
    conversation = call(readback=False, number="", entry_max_digits=7)
    conversation.expect_no_number()
    conversation.press("123456")
    assert conversation.callback_requests == []
    conversation.press("7")
    conversation.expect_callback("1234567")


def test_letters_are_not_part_of_a_number() -> None:
    conversation = call(readback=False, number="")
    conversation.press("49A5B1234567C#")
    conversation.expect_no_number()
    conversation.expect_callback("4951234567")


def test_an_entry_prompt_that_fails_still_takes_the_digits() -> None:
    conversation = call(readback=False, number="", missing_sounds=["custom/IVR_DND_NO_NUMBER"])
    conversation.expect_no_number()
    conversation.wait(3)
    assert conversation.flow.state is State.ENTERING
    failed = call(
        readback=False,
        number="",
        missing_sounds=["custom/IVR_DND_NO_NUMBER", "custom/IVR_DND_ENTER_NUMBER"],
    )
    failed.expect_no_number()
    assert failed.flow.state is State.ENTERING
    failed.press("4951234567#")
    failed.expect_callback("4951234567")


def test_read_back_off_and_entry_after_the_change_key_is_unreachable_but_entry_still_works() -> (
    None
):
    conversation = call(readback=False, number="")
    conversation.press("4951234567#")
    conversation.expect_no_number()
    conversation.expect_callback("4951234567")


# --- hidden numbers --------------------------------------------------------------


@pytest.mark.parametrize("number", ["", "anonymous", "Unknown", "12345", "1&a=2"])
def test_hidden_or_unusable_number_is_asked_for_after_the_key(number: str) -> None:
    conversation = call(number=number)
    conversation.expect_no_number()
    conversation.press("4951234567#")
    conversation.expect_readback("4951234567")


def test_hidden_number_without_entry_gets_sorry_at_once_as_before() -> None:
    conversation = Conversation(settings(hidden_number_entry=False), number="anonymous")
    conversation.expect_sorry()
    assert conversation.flow.outcome is Outcome.NO_CALLERID


def test_queue_breakout_with_a_hidden_number_goes_to_entry() -> None:
    conversation = Conversation(settings(), number="", args=("breakout", "1"))
    conversation.expect_no_number()


# --- what the CRM may get -----------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("123456", "123456"),
        ("12345", ""),
        ("+123456789012345", "+123456789012345"),
        ("1234567890123456", ""),
        ("++123456", ""),
        ("", ""),
    ],
)
def test_default_pattern_takes_6_to_15_digits_with_an_optional_plus(
    number: str, expected: str
) -> None:
    assert callback_number(number, DEFAULT_NUMBER_PATTERN) == expected


def test_first_matching_rewrite_wins_and_its_result_must_pass() -> None:
    assert callback_number("89001234567", DEFAULT_NUMBER_PATTERN, RU_RULES) == NUMBER
    assert callback_number("79001234567", DEFAULT_NUMBER_PATTERN, RU_RULES) == NUMBER
    assert callback_number("9001234567", DEFAULT_NUMBER_PATTERN, RU_RULES) == "9001234567"
    # A rule matches the whole number only.
    assert callback_number("189001234567", DEFAULT_NUMBER_PATTERN, RU_RULES) == "189001234567"
    # A rule cannot bring in anything but + and digits, nor skip the pattern.
    assert callback_number("8123456", DEFAULT_NUMBER_PATTERN, ((r"8(\d+)", r"x\1"),)) == ""
    assert callback_number("812345", DEFAULT_NUMBER_PATTERN, ((r"8(\d+)", r"\1"),)) == ""


def test_caller_id_is_checked_with_the_same_rules() -> None:
    conversation = call(number="8 900 123-45-67", number_rewrite=RU_RULES)
    conversation.expect_readback(NUMBER)


# --- already requested ---------------------------------------------------------------


def test_already_requested_number_hears_so_instead_of_the_confirmation() -> None:
    flow = CallFlow(settings(readback=False))
    flow.handle(StasisStart(Channel("ch1", caller_number=NUMBER)))
    facts = (("language", "en"), ("uniqueid", "ch1"), ("profile", "default"))
    assert flow.handle(ChannelDtmfReceived("1"))[2] == RequestCallback(NUMBER, "", facts)
    commands = flow.handle(CallbackStored(already_requested=True))
    assert isinstance(commands[1], Play)
    assert commands[1].media == "sound:custom/IVR_DND_ALREADY_REQUESTED"
    assert flow.outcome is Outcome.ALREADY_REQUESTED
    assert flow.callback_stored


def test_already_requested_without_its_prompt_falls_back_to_the_confirmation() -> None:
    conversation = call(readback=False, already_requested="", callbacks="already_requested")
    conversation.expect_callback(NUMBER)
    conversation.expect_confirmation()


# --- leaving -------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["", "2", "2123"])
@pytest.mark.parametrize("waited", [0.0, 3.0, 20.0])
def test_hang_up_at_any_step_ends_everything(keys: str, waited: float) -> None:
    conversation = call(silence_confirms=False)
    conversation.press(keys)
    conversation.wait(waited)
    if conversation.flow.ending is None:
        conversation.hang_up()
    done = len(conversation.commands)
    conversation.wait(1000)
    assert len(conversation.commands) == done
    assert conversation.callback_requests == []


def test_drain_during_entry_sends_the_caller_to_the_dialplans_menu() -> None:
    conversation = call(number="")
    conversation.expect_no_number()
    conversation.press("49")
    conversation.drain_ends()
    conversation.expect_continue("dnd-fallback,s,1")


def test_stale_timers_change_nothing() -> None:
    flow = CallFlow(settings(number_rewrite=RU_RULES))
    flow.handle(StasisStart(Channel("ch1", caller_number="")))
    flow.handle(ChannelDtmfReceived("1"))
    flow.handle(PlaybackFinished(flow.playing or ""))
    assert state(flow) is State.ENTERING
    assert flow.handle(TimerFired("old")) == []
    assert flow.handle(PlaybackFinished("old")) == []
    flow.handle(ChannelDtmfReceived("#"))
    assert flow.handle(PlaybackFinished("old")) == []
    for digit in "89001234567#":
        flow.handle(ChannelDtmfReceived(digit))
    assert state(flow) is State.READBACK
    assert flow.handle(PlaybackFinished("old")) == []
    flow.handle(PlaybackFinished(flow.playing or ""))
    assert flow.handle(TimerFired("old")) == []
    assert state(flow) is State.CONFIRM_WAIT
