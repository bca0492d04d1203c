"""Hypothesis: random event sequences never break the flow's promises."""

from __future__ import annotations

import re
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from stasis_dnd.core import (
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
    Event,
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
    normalize_number,
)
from stasis_dnd.core.callerid import phone_of
from stasis_dnd.core.states import KEY_STOPS_PROMPT
from stasis_dnd.settings import (
    DEFAULT_CONTINUE,
    DEFAULT_CONTINUE_STORED,
    DEFAULT_NUMBER_PATTERN,
    DialplanTarget,
    IvrSettings,
)

# Stand-ins for "the playback the flow waits on" and "the timer it runs now",
# so random sequences often hit the live ids, not only stale ones.
PLAYING = "<playing>"
RUNNING = "<running timer>"
DIGITS = st.sampled_from([*list("0123456789*#ABCD"), "1", "2", "8", "#", "", "11", "x"])
IDS = st.sampled_from(["ch1-p1", "ch1-p2", "ch1-p3", "ch1-p4", "ch1-p5", "other", PLAYING])
TIMERS = st.sampled_from(
    ["ch1-pause1", "ch1-digit2", "ch1-digit3", "ch1-store2", "ch1-store3"]
    + ["ch1-p1-start", "ch1-p1-watchdog", "ch1-p2-start", "ch1-p2-watchdog", "nope"]
    + [RUNNING] * 5
)
CHANNELS = st.builds(
    Channel,
    id=st.just("ch1"),
    state=st.sampled_from(["Up", "Ring", "Ringing", "Down"]),
    caller_name=st.sampled_from(["", "Ivan", "+7 900 1112233", "anonymous"]),
    caller_number=st.sampled_from(
        ["", "+79001234567", "8 (900) 123-45-67", "Unknown", "1&x", "123", "7"]
    ),
    language=st.sampled_from(["en", "ru", ""]),
)
ARGS = st.lists(st.sampled_from(["TIMEOUT", "breakout", "1", "2", "", "x,y"]), max_size=3)
STARTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(StasisStart, CHANNELS, ARGS.map(tuple), st.booleans()),
    st.builds(CallRecovered, CHANNELS, st.booleans(), st.booleans()),
)
IN_CALL: st.SearchStrategy[Event] = st.one_of(
    st.builds(ChannelDtmfReceived, DIGITS),
    st.builds(PlaybackStarted, IDS),
    st.builds(PlaybackFinished, IDS, st.sampled_from(["done", "failed"])),
    st.builds(TimerFired, TIMERS),
    st.just(CallbackStored()),
    st.builds(CallbackNotStored, st.just("x")),
)
ENDS: st.SearchStrategy[Event] = st.sampled_from(
    [ChannelHangupRequest(), StasisEnd(), ChannelGone(), DrainEnded()]
)
# Mostly events of a call in progress, so sequences get deep into the flow
# before a hang-up or a second start ends or upsets it.
# Keys and the live playback's end or timer, most often, and an end rarely:
# the read-back and number entry lie several steps deep.
KEYS = st.sampled_from(["1", "1", "2", "#", "*", "8", "9", "5"])
DEEPER: st.SearchStrategy[Event] = st.one_of(
    st.builds(ChannelDtmfReceived, KEYS),
    st.just(PlaybackFinished(PLAYING)),
    st.just(TimerFired(RUNNING)),
)
EVENTS: st.SearchStrategy[Event] = st.one_of(*[IN_CALL] * 3, *[DEEPER] * 12, STARTS, ENDS)
CLOSED_TARGET = DialplanTarget("dnd-closed", "s", "1")
IVR_SETTINGS = st.builds(
    IvrSettings,
    attempts=st.integers(1, 3),
    invalid_prompt=st.sampled_from(["", "option-is-invalid"]),
    confirmation=st.sampled_from(["", "custom/IVR_DND_CALLBACK_CONFIRMED"]),
    answer_pause=st.sampled_from([0.0, 1.0]),
    callerid_source=st.sampled_from(["number", "name", "number_then_name"]),
    on_prompt_failure=st.sampled_from(["continue", "sorry", "wait"]),
    continue_to=st.sampled_from([None, DEFAULT_CONTINUE]),
    continue_stored_to=st.sampled_from([None, DEFAULT_CONTINUE_STORED, DEFAULT_CONTINUE]),
    outside_hours=st.sampled_from(["offer", "announce", "continue"]),
    closed_continue_to=st.sampled_from([None, CLOSED_TARGET]),
    readback=st.booleans(),
    silence_confirms=st.booleans(),
    confirm_attempts=st.integers(1, 3),
    hidden_number_entry=st.booleans(),
    entry_attempts=st.integers(1, 3),
    entry_max_digits=st.sampled_from([1, 6, 16]),
    number_pattern=st.sampled_from([DEFAULT_NUMBER_PATTERN, r"[0-9]{1,3}", r"\+7[0-9]{10}"]),
    number_rewrite=st.sampled_from([(), ((r"8(\d{10})", r"+7\1"),), ((r"(\d)", r"+\1\1"),)]),
)
GONE = (ChannelHangupRequest, StasisEnd, ChannelGone)


def resolve(event: Event, flow: CallFlow, running: set[str]) -> Event:
    """The event with its stand-in replaced by the live playback or timer id."""
    if isinstance(event, PlaybackFinished) and event.playback_id == PLAYING:
        return PlaybackFinished(flow.playing or "none", event.state)
    if isinstance(event, PlaybackStarted) and event.playback_id == PLAYING:
        return PlaybackStarted(flow.playing or "none")
    if isinstance(event, TimerFired) and event.timer_id == RUNNING:
        return TimerFired(min(running, default="none"))
    return event


def check_command(
    command: Command, ivr: IvrSettings, running: set[str], *, stored: bool, refused: bool
) -> None:
    """One command's own promises; keeps `running` (the live timers) up to date."""
    if isinstance(command, RequestCallback):
        # Never a number the rules did not pass, keyed in or from the caller id.
        assert re.fullmatch(r"\+?[0-9]+", command.phone)
        assert re.fullmatch(ivr.number_pattern, command.phone)
        if command.caller_id:
            assert re.fullmatch(r"\+?[0-9]+", command.caller_id)
            assert re.fullmatch(ivr.number_pattern, command.caller_id)
            assert command.caller_id != command.phone
    if isinstance(command, StartTimer):
        assert command.seconds >= 0
        running.add(command.timer_id)
    if isinstance(command, CancelTimer):
        running.remove(command.timer_id)  # only a timer that runs
    if isinstance(command, ContinueInDialplan):
        if stored:
            assert command.target == ivr.continue_stored_to
        else:
            assert command.target == (ivr.closed_continue_to if refused else ivr.continue_to)


@settings(max_examples=1500)
@given(
    IVR_SETTINGS, st.lists(EVENTS, max_size=4), STARTS, st.lists(EVENTS, min_size=20, max_size=60)
)
def test_random_sequences_keep_the_promises(
    ivr: IvrSettings, before: list[Event], start: Event, after: list[Event]
) -> None:
    check_sequence(ivr, [*before, start, *after])


@settings(max_examples=800)
@given(IVR_SETTINGS, CHANNELS, st.lists(EVENTS, min_size=10, max_size=60))
def test_random_sequences_after_the_key_keep_the_promises(
    ivr: IvrSettings, channel: Channel, after: list[Event]
) -> None:
    """The same, from the accepted key on: read-back, confirmation, entry."""
    start = StasisStart(replace(channel, state="Up"), ("breakout", ivr.accept_digit))
    check_sequence(ivr, [start, *after])


def refused_at_start(ivr: IvrSettings, event: Event, *, drained: bool) -> bool:
    """Whether this start, outside hours, takes no request (announce or continue);
    a stored caller only hears goodbye, and a shutdown sends anyone back."""
    if not isinstance(event, StasisStart | CallRecovered):
        return False
    stored = isinstance(event, CallRecovered) and event.callback_stored
    return not (event.open or stored or drained or ivr.outside_hours == "offer")


def check_warning(
    flow: CallFlow, event: Event, state_before: State, commands: list[Command]
) -> None:
    # Only a watchdog warns: a stuck playback is stopped; a store that
    # hangs gets sorry (or, at shutdown, the dialplan).
    assert isinstance(event, TimerFired)
    if state_before is State.STORING:
        assert isinstance(commands[0], Play | ContinueInDialplan)
        assert flow.outcome is Outcome.CALLBACK_FAILED
    else:
        assert isinstance(commands[0], StopPlayback)


def check_sequence(ivr: IvrSettings, events: list[Event]) -> None:
    """Whatever happens: no callback without the key, nothing after a hang-up,
    one ending, every wait bounded by exactly one timer, a key stops the
    prompt it interrupts, no number the rules did not pass, and a hand-back to
    the dialplan never offers the menu again to a caller whose request is stored."""
    flow = CallFlow(ivr)
    accept_seen = False
    gone = False
    requests: list[RequestCallback] = []
    endings = []
    running: set[str] = set()  # timers started, neither cancelled nor fired
    stored_told = False  # the flow accepted a CallbackStored, or recovered a stored caller
    drained = False  # a DrainEnded came before the start
    refused = False  # started outside hours with a policy that takes no request
    for drawn in events:
        event = resolve(drawn, flow, running)
        if isinstance(event, TimerFired):
            running.discard(event.timer_id)
        if isinstance(event, ChannelDtmfReceived) and event.digit == ivr.accept_digit:
            accept_seen = True
        if isinstance(event, StasisStart) and event.args[:2] == ("breakout", ivr.accept_digit):
            accept_seen = True
        if isinstance(event, CallRecovered) and event.callback_stored:
            accept_seen = True  # the digit was pressed before the restart
        state_before, playing_before = flow.state, flow.playing
        if state_before is State.NEW:
            drained = drained or isinstance(event, DrainEnded)
            refused = refused_at_start(ivr, event, drained=drained)
        commands: list[Command] = flow.handle(event)  # never raises
        if state_before in KEY_STOPS_PROMPT and isinstance(event, ChannelDtmfReceived):
            assert commands[0] == StopPlayback(playing_before or ""), "no barge-in"
        if flow.callback_stored and not stored_told:
            assert isinstance(event, CallbackStored | CallRecovered), "stored without being told"
            assert flow.callback_requested
            stored_told = True
        if gone:
            assert commands == [], "a command after the caller hung up"
        for command in commands:
            if isinstance(command, RequestCallback):
                assert accept_seen, "a callback request without the accepted key"
                assert not refused, "a callback request outside hours, not to be offered"
                requests.append(command)
            check_command(command, ivr, running, stored=stored_told, refused=refused)
        if flow.warning is not None:
            check_warning(flow, event, state_before, commands)
        if flow.ending is None and flow.state is not State.NEW:
            assert len(running) == 1, f"{len(running)} timers run in state {flow.state.value}"
        if isinstance(event, GONE):
            gone = True
            assert flow.ending is not None
        if flow.ending is not None:
            endings.append(flow.ending)
    assert len(requests) <= 1
    assert len(set(endings)) <= 1, "a call ended in two different ways"
    if requests:
        assert flow.callback_requested


@given(st.text(max_size=200))
def test_normalised_number_is_empty_or_digits(raw: str) -> None:
    result = normalize_number(raw)
    assert result == "" or re.fullmatch(r"\+?[0-9]+", result)


@given(st.text(max_size=50), st.text(max_size=50), st.sampled_from(["number", "name", "x"]))
def test_phone_of_any_callerid_is_safe(number: str, name: str, source: str) -> None:
    result = phone_of(number, name, source)
    assert result == "" or re.fullmatch(r"\+?[0-9]+", result)


@given(st.from_regex(r"\+?[0-9]{3,20}", fullmatch=True))
def test_clean_numbers_survive_unchanged(number: str) -> None:
    assert normalize_number(number) == number
