"""The call's facts from the Stasis() arguments (core.context) and in the flow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stasis_dnd.core import CallFlow, Channel, ChannelDtmfReceived, RequestCallback, StasisStart
from stasis_dnd.core.context import MAX_VALUE, CallContext, clean, parse_stasis_args
from stasis_dnd.settings import IvrSettings

CH = Channel("ch1", "Up", "", "+79001234567", "ru", linkedid="1700000000.1")


def test_timeout_with_every_fact() -> None:
    context, key = parse_stasis_args(("TIMEOUT", "queue=999", "waited=42", "dialled=4951234567"))
    assert key is None
    assert context == CallContext("TIMEOUT", "999", "42", "4951234567")
    assert context.facts(CH) == (
        ("queue", "999"),
        ("reason", "TIMEOUT"),
        ("waited_seconds", "42"),
        ("dialled", "4951234567"),
        ("language", "ru"),
        ("uniqueid", "ch1"),
        ("linkedid", "1700000000.1"),
    )


def test_breakout_key_then_facts() -> None:
    context, key = parse_stasis_args(("Breakout", "1", "queue=sales", "waited=7"))
    assert key == "1"
    assert (context.reason, context.queue, context.waited_seconds) == ("breakout", "sales", "7")


def test_breakout_without_a_key_has_no_key() -> None:
    assert parse_stasis_args(("breakout", "queue=999"))[1] is None
    assert parse_stasis_args(("breakout",)) == (CallContext("breakout"), None)


def test_no_arguments_no_facts_but_the_channels() -> None:
    context, key = parse_stasis_args(())
    assert (context, key) == (CallContext(), None)
    assert context.facts(Channel("ch1", language="")) == (("uniqueid", "ch1"),)


def test_a_fact_as_first_argument_means_no_reason() -> None:
    context, _ = parse_stasis_args(("queue=999", "TIMEOUT"))
    assert context == CallContext("", "999")


def test_unknown_names_and_extra_positionals_are_ignored_and_named() -> None:
    context, _ = parse_stasis_args(("FULL", "x", "colour=red", "QUEUE=q1", "Profile=sales"))
    assert context == CallContext("FULL", "q1", profile="sales", unknown=("colour",))


def test_waited_must_be_a_whole_number_of_seconds() -> None:
    for bad in ("-3", "4.5", "", "12a", "١٢"):
        assert parse_stasis_args(("TIMEOUT", f"waited={bad}"))[0].waited_seconds == ""
    assert parse_stasis_args(("TIMEOUT", "waited=0"))[0].waited_seconds == "0"


def test_values_lose_control_characters_and_are_capped() -> None:
    assert clean("9\x0099\r\n&x=1") == "999&x=1"  # & and = stay: the HTTP client encodes them
    assert clean(" 999 ") == "999"
    assert clean("7" * 100) == "7" * MAX_VALUE
    assert parse_stasis_args(("TIME\nOUT", "dialled=" + "8" * 65))[0] == CallContext(
        "TIMEOUT", dialled="8" * 64
    )


def test_the_flow_sends_the_facts_with_the_request() -> None:
    flow = CallFlow(IvrSettings(answer_pause=0, readback=False))
    flow.handle(StasisStart(CH, ("breakout", "1", "queue=999", "dialled=123", "odd=1")))
    assert flow.unknown_args == ("odd",)
    assert flow.context[:3] == (("queue", "999"), ("reason", "breakout"), ("dialled", "123"))


def test_a_break_out_with_facts_still_skips_the_menu() -> None:
    flow = CallFlow(IvrSettings(answer_pause=0, readback=False))
    commands = flow.handle(StasisStart(CH, ("breakout", "1", "queue=999", "waited=5")))
    assert commands[0] == RequestCallback(
        "+79001234567",
        context=(
            ("queue", "999"),
            ("reason", "breakout"),
            ("waited_seconds", "5"),
            ("language", "ru"),
            ("uniqueid", "ch1"),
            ("linkedid", "1700000000.1"),
            ("profile", "default"),
        ),
    )


def test_a_break_out_with_another_key_plays_the_menu() -> None:
    flow = CallFlow(IvrSettings(answer_pause=0, readback=False))
    commands = flow.handle(StasisStart(CH, ("breakout", "2", "queue=999")))
    assert not any(isinstance(c, RequestCallback) for c in commands)
    later = flow.handle(ChannelDtmfReceived("1"))
    assert next(c for c in later if isinstance(c, RequestCallback)).context[1] == (
        "reason",
        "breakout",
    )


_ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)
_HOSTILE = st.one_of(
    _ANY_TEXT,
    st.builds(
        lambda name, value: f"{name}={value}",
        st.sampled_from(["queue", "waited", "dialled", "Queue", "x", ""]),
        _ANY_TEXT | st.sampled_from(["&aon=1", "a=b&c", "%00%0A", "1\r\n2", "\x00" * 5]),
    ),
)


@given(st.lists(_HOSTILE, max_size=10))
def test_any_arguments_give_clean_capped_facts(args: list[str]) -> None:
    context, _ = parse_stasis_args(tuple(args))
    for name, value in context.facts(CH):
        assert 0 < len(value) <= MAX_VALUE, name
        assert value == clean(value), name
        assert not any(ch in value for ch in "\x00\r\n\t"), name
    assert context.waited_seconds == "" or context.waited_seconds.isdigit()


@given(st.lists(_HOSTILE, max_size=8), st.sampled_from(["breakout", "BREAKOUT", "BreakOut"]))
def test_a_break_out_is_recognised_whatever_follows(rest: list[str], word: str) -> None:
    facts = [a for a in rest if "=" in a]
    context, key = parse_stasis_args((word, "1", *facts))
    assert (context.reason, key) == ("breakout", "1")


def test_the_linkedid_from_the_dialplan_when_ari_gives_none() -> None:
    context, _ = parse_stasis_args(("TIMEOUT", "linkedid=1700000000.3"))
    assert context.facts(Channel("ch1", language=""))[-1] == ("linkedid", "1700000000.3")
    # ARI's own value, where it gives one, wins.
    assert dict(context.facts(CH))["linkedid"] == "1700000000.1"
