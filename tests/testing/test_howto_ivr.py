"""How to test an IVR flow like a conversation (these are the README's examples).

The `ivr` fixture comes with the package (a pytest plugin): no Asterisk, no
sleeping; time moves only when the caller waits or the flow needs it to.
"""

from __future__ import annotations

import pytest

from stasis_dnd.testing import Conversation, ConversationError
from stasis_dnd.testing.plugin import IvrKit


def test_caller_presses_1_and_gets_a_callback(ivr: IvrKit) -> None:
    call = ivr.call(number="+7 900 123-45-67")
    call.expect_prompt()
    call.press("1")
    call.expect_readback("+79001234567")  # "we will call you back at 7 9 0 0 ..."
    call.press("1")  # confirms (so would silence)
    call.expect_callback("+79001234567")
    call.expect_confirmation()
    call.expect_goodbye()
    call.expect_hangup()


def test_caller_gives_another_number(ivr: IvrKit) -> None:
    call = ivr.call(number="+79001234567")
    call.expect_prompt()
    call.press("1")
    call.expect_readback("+79001234567")
    call.press("2")
    call.expect_entry_prompt()
    call.press("84951234567#")
    call.expect_readback("84951234567")
    call.press("1")
    call.expect_callback("84951234567", caller_id="+79001234567")
    call.expect_confirmation()


def test_hidden_number_keys_one_in_after_an_invalid_try(ivr: IvrKit) -> None:
    ivr.configure(number_rewrite=((r"8(\d{10})", r"+7\1"),))
    call = ivr.call(number="anonymous")
    call.expect_prompt()
    call.press("1")
    call.expect_no_number()  # "we cannot see your number; please enter it, then hash"
    call.press("123#")
    call.expect_number_invalid()
    call.press("89001234567#")
    call.expect_readback("+79001234567")  # rewritten to the international form
    call.wait(3)  # silence confirms
    call.expect_callback("+79001234567", caller_id="")
    call.expect_confirmation()


def test_caller_who_asked_already_is_told_so(ivr: IvrKit) -> None:
    call = ivr.call(callbacks="already_requested")
    call.expect_prompt()
    call.press("11")  # the second 1 confirms the read-back at once
    call.expect_readback("+79001234567")
    call.expect_callback("+79001234567")
    call.expect_already_requested()
    call.expect_goodbye()


def test_unanswered_channel_is_answered_with_a_pause(ivr: IvrKit) -> None:
    call = ivr.call(state="Ring")
    call.expect_answer()
    call.expect_prompt()
    assert call.now == 1.0  # the original's Wait(1)


def test_silence_gets_sorry_and_goodbye(ivr: IvrKit) -> None:
    call = ivr.call()
    call.expect_prompt()
    call.expect_sorry()  # the clock runs through the prompt and the 3 s timeout
    assert call.now == 2.0 + 3.0
    call.expect_goodbye()
    call.expect_hangup()
    assert call.callback_requests == []


def test_two_attempts_with_an_invalid_notice(ivr: IvrKit) -> None:
    ivr.configure(attempts=2, invalid_prompt="option-is-invalid")
    call = ivr.call()
    call.expect_prompt()
    call.press("7")
    call.expect_invalid_notice()
    call.expect_prompt()
    call.press("1")
    call.expect_readback("+79001234567")


def test_confirmation_after_the_request_is_stored(ivr: IvrKit) -> None:
    ivr.configure(readback=False)
    call = ivr.call(callbacks="manual")
    call.expect_prompt()
    call.press("1")
    call.expect_callback("+79001234567")
    call.wait(9.9)  # nothing is promised until the outbox answers (within store_timeout)
    assert call.heard == ["sound:custom/IVR_DND_OPERATORS"]
    call.callback_stored()
    call.expect_confirmation()
    call.expect_goodbye()


def test_no_false_promise_when_the_request_cannot_be_stored(ivr: IvrKit) -> None:
    ivr.configure(readback=False)
    call = ivr.call(callbacks="not_stored")
    call.expect_prompt()
    call.press("1")
    call.expect_callback("+79001234567")
    call.expect_sorry()
    call.expect_goodbye()


def test_caller_hangs_up_during_the_prompt(ivr: IvrKit) -> None:
    call = ivr.call()
    call.expect_prompt()
    call.wait(0.5)
    call.hang_up()
    call.expect_nothing_more()
    assert call.flow.outcome is not None and call.flow.outcome.value == "abandoned"


def test_missing_prompt_sends_the_caller_back_to_the_dialplan(ivr: IvrKit) -> None:
    call = ivr.call(missing_sounds=["custom/IVR_DND_OPERATORS"])
    call.expect_prompt()
    call.expect_continue()


def test_queue_breakout_goes_straight_to_the_read_back(ivr: IvrKit) -> None:
    call = ivr.call(args=("breakout", "1"))
    call.expect_readback("+79001234567")
    call.press("1")
    call.expect_callback("+79001234567")
    call.expect_confirmation()


def test_a_failed_expectation_explains_itself() -> None:
    call = Conversation()
    call.expect_prompt()
    call.press("2")
    with pytest.raises(ConversationError) as caught:
        call.expect_callback("+79001234567")
    message = str(caught.value)
    assert "expected the flow to request a callback for +79001234567" in message
    assert "but it did: play sound:sorry-youre-having-problems" in message
    assert "caller   presses 2" in message


def test_expecting_more_than_happens_fails() -> None:
    call = Conversation()
    call.expect_prompt()
    call.hang_up()
    with pytest.raises(ConversationError, match="did nothing more"):
        call.expect_goodbye()


def test_played_another_sound_fails() -> None:
    call = Conversation()
    with pytest.raises(ConversationError, match="but it played sound:custom/IVR_DND_OPERATORS"):
        call.expect_goodbye()


def test_unexpected_commands_fail_expect_nothing_more() -> None:
    call = Conversation()
    with pytest.raises(ConversationError, match="play sound:custom"):
        call.expect_nothing_more()


def test_sound_lengths_recovery_and_stops(ivr: IvrKit) -> None:
    call = ivr.call(sound_seconds={"custom/IVR_DND_OPERATORS": 10}, recovered=True)
    call.expect_prompt()
    call.wait(9)
    call.press("1")
    call.expect_stop()
    call.expect_readback("+79001234567")
    call.press("1")
    call.expect_stop()  # a key stops the read-back too
    call.expect_callback("+79001234567")
    call.expect_confirmation()
    call.expect_goodbye()
    assert call.heard[0] == "sound:custom/IVR_DND_OPERATORS"
    assert call.heard[-2:] == ["sound:custom/IVR_DND_CALLBACK_CONFIRMED", "sound:vm-goodbye"]


def test_recovered_call_whose_request_is_stored(ivr: IvrKit) -> None:
    call = ivr.call(recovered=True, callback_already_stored=True)
    call.expect_goodbye()
    call.expect_hangup()
    assert call.callback_requests == []


def test_shutdown_sends_the_call_back_to_the_dialplan(ivr: IvrKit) -> None:
    call = ivr.call()
    call.expect_prompt()
    call.drain_ends()
    call.expect_stop()
    call.expect_continue()


def test_raw_events_and_wrong_phone(ivr: IvrKit) -> None:
    from stasis_dnd.core import ChannelDtmfReceived

    call = ivr.call(number="8 900 000 00 00")
    call.expect_prompt()
    call.send(ChannelDtmfReceived("1"))
    call.send(ChannelDtmfReceived("1"))
    call.expect_readback("89000000000")
    with pytest.raises(ConversationError, match="requested one for 89000000000"):
        call.expect_callback("+79000000000")


def test_manual_outbox_failure(ivr: IvrKit) -> None:
    call = ivr.call(callbacks="manual")
    call.expect_prompt()
    call.press("11")
    call.expect_readback("+79001234567")
    call.expect_callback("+79001234567")
    call.callback_not_stored("disk full")
    call.expect_sorry()
    assert "could not store the request: disk full" in "\n".join(call.transcript)


def test_a_prompt_that_never_starts_sends_the_caller_back_to_the_dialplan(ivr: IvrKit) -> None:
    # Asterisk 22 after a freeze: the play request is accepted, then nothing.
    call = ivr.call(stuck_sounds=["custom/IVR_DND_OPERATORS"])
    call.expect_prompt()
    call.wait(4.9)
    assert call.flow.ending is None  # still waiting for the prompt to start
    call.expect_stop()  # after 5 s (playback_start_timeout) the flow gives up on it
    # As for a prompt that failed: the dialplan's own menu serves the caller.
    call.expect_continue("dnd-fallback,s,1")
    assert call.now == 5.0
    assert "did not start in time" in "\n".join(call.transcript)


def test_a_prompt_that_starts_and_never_ends_is_bounded_by_playback_timeout(ivr: IvrKit) -> None:
    call = ivr.call(endless_sounds=["custom/IVR_DND_OPERATORS"])
    call.expect_prompt()
    call.wait(119)
    assert call.flow.ending is None
    call.expect_stop()  # after 120 s (playback_timeout)
    call.expect_continue("dnd-fallback,s,1")
    assert call.now == 120.0
    assert "neither finished nor failed within 120 s" in "\n".join(call.transcript)


def test_a_store_that_hangs_gets_sorry_after_store_timeout(ivr: IvrKit) -> None:
    call = ivr.call(callbacks="manual")  # the outbox never answers
    call.expect_prompt()
    call.press("11")
    call.expect_readback("+79001234567")
    call.expect_callback("+79001234567")
    call.expect_sorry()  # no promise that cannot be kept
    assert call.now == 10.0  # store_timeout
    call.callback_stored()  # the late answer: the request will be delivered all the same
    call.expect_goodbye()
    call.expect_hangup()


def test_shutdown_after_the_key_sends_the_caller_to_goodbye_not_the_menu(ivr: IvrKit) -> None:
    call = ivr.call()
    call.expect_prompt()
    call.press("11")
    call.expect_readback("+79001234567")
    call.expect_callback("+79001234567")
    call.expect_confirmation()
    call.drain_ends()
    call.expect_stop()
    call.expect_continue("dnd-fallback,hang,1")  # the dialplan plays only goodbye
