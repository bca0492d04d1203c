"""Edges of the call flow that the transition tests pass over: digit-count
limits, arguments whose values hold "=", what a recovered flow reports, and
the exact words of the flow's anomalies and warnings."""

from __future__ import annotations

from stasis_dnd.core import (
    CallbackStored,
    CallFlow,
    CallRecovered,
    Channel,
    ChannelDtmfReceived,
    DrainEnded,
    StasisStart,
    State,
    TimerFired,
)
from stasis_dnd.core.callerid import MAX_DIGITS, normalize_number
from stasis_dnd.core.context import parse_stasis_args
from stasis_dnd.settings import IvrSettings
from stasis_dnd.testing import Conversation

CH = Channel("ch1", "Up", "Ivan", "+79001234567", "ru")
HIDDEN = Channel("ch1", "Up", "", "", "ru")
ARGS = ("TIMEOUT", "queue=sales", "waited=42", "profile=vip")
SIMPLE = IvrSettings(readback=False, hidden_number_entry=False, confirmation="")


def test_a_number_of_exactly_max_digits_is_kept_and_one_more_is_not() -> None:
    assert normalize_number("1" * MAX_DIGITS) == "1" * MAX_DIGITS
    assert normalize_number("1" * (MAX_DIGITS + 1)) == ""


def test_entry_ends_on_the_last_allowed_digit_without_waiting() -> None:
    conversation = Conversation(
        IvrSettings(readback=False, entry_max_digits=7, hidden_number_entry=True), number=""
    )
    conversation.expect_prompt()
    conversation.press("1")
    conversation.expect_no_number()
    before = conversation.now
    conversation.press("1234567")
    assert conversation.callback_requests == ["1234567"]
    assert conversation.now == before


def test_an_argument_value_may_hold_an_equals_sign() -> None:
    context, _ = parse_stasis_args(("TIMEOUT", "queue=a=b"))
    assert context.queue == "a=b"
    assert context.unknown == ()


def test_a_recovered_flow_reports_the_same_facts_as_at_its_start() -> None:
    fresh = CallFlow(SIMPLE, profile="vip")
    fresh.handle(StasisStart(CH, ARGS))
    recovered = CallFlow(SIMPLE, id_prefix="r1-", profile="vip")
    recovered.handle(CallRecovered(CH, args=ARGS))
    assert recovered.context == fresh.context
    assert ("profile", "vip") in recovered.context
    assert recovered.unknown_args == ()


def test_a_late_stored_answer_without_a_request_is_an_anomaly() -> None:
    flow = CallFlow(SIMPLE)
    flow.handle(StasisStart(HIDDEN, ("TIMEOUT",)))  # no caller id, no entry: sorry
    assert flow.state is State.SORRY
    assert flow.handle(CallbackStored()) == []
    assert flow.anomaly == "can't handle CallbackStored without a request"
    assert not flow.callback_stored


def test_the_store_timeout_warning_says_what_the_caller_hears() -> None:
    conversation = Conversation(SIMPLE, callbacks="manual")
    conversation.expect_prompt()
    conversation.press("1")
    flow = conversation.flow
    assert flow.state is State.STORING
    timer = flow._timer
    assert timer is not None
    flow.handle(TimerFired(timer))
    assert flow.warning == (
        f"the callback request was not stored within {SIMPLE.store_timeout:g} s;"
        " the caller hears sorry (a late answer is delivered all the same)"
    )


def test_a_flow_handed_back_at_shutdown_waits_on_no_playback() -> None:
    flow = CallFlow(SIMPLE)
    flow.handle(StasisStart(CH, ("TIMEOUT",)))
    assert flow.playing is not None
    flow.handle(DrainEnded())
    assert flow.playing is None


def test_a_key_during_the_answer_pause_is_dropped_as_expected_not_an_anomaly() -> None:
    flow = CallFlow(IvrSettings(answer_pause=1.0))
    flow.handle(StasisStart(Channel("ch1", "Ring", "Ivan", "+79001234567", "ru"), ("TIMEOUT",)))
    assert flow.state is State.PAUSING
    assert flow.handle(ChannelDtmfReceived("5")) == []
    assert flow.anomaly is None
