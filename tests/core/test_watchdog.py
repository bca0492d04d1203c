"""The playback watchdogs: a playback that never starts, or starts and never
ends, is treated as failed.

Both seen on Asterisk 22 after a long freeze: a play request answered 201,
then neither PlaybackStarted nor PlaybackFinished, ever (the start watchdog,
`playback_start_timeout`, catches it in seconds); `playback_timeout` bounds
a playback that started and never ends.
"""

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
    StasisStart,
    State,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.settings import DEFAULT_CONTINUE, IvrSettings

# The flow without read-back, number entry or confirmation: the original's
# steps, which these tests pin (test_number_steps.py covers the rest).
SIMPLE = IvrSettings(readback=False, hidden_number_entry=False, confirmation="")


def simple(**changes: Any) -> IvrSettings:
    return replace(SIMPLE, **changes)


CH = Channel("ch1", "Up", "", "+79001234567", "en")
PROMPT = "sound:custom/IVR_DND_OPERATORS"
NOTICE = "sound:option-is-invalid"
CONFIRMATION = "sound:custom/IVR_DND_CALLBACK_CONFIRMED"
SORRY = "sound:sorry-youre-having-problems"
GOODBYE = "sound:vm-goodbye"
TO_MENU = ContinueInDialplan(DEFAULT_CONTINUE)


def play(playback_id: str, media: str, start_timeout: float = 5.0) -> list[Command]:
    return [Play(playback_id, media, "en"), StartTimer(playback_id + "-start", start_timeout)]


def begins(flow: CallFlow, playback_id: str, timeout: float = 120.0) -> None:
    """Asterisk reports the playback started: the start watchdog gives way to the end one."""
    assert flow.handle(PlaybackStarted(playback_id)) == [
        CancelTimer(playback_id + "-start"),
        StartTimer(playback_id + "-watchdog", timeout),
    ]


def stuck(playback_id: str) -> TimerFired:
    """The end watchdog of `playback_id` fires: it started, never finished nor failed."""
    return TimerFired(playback_id + "-watchdog")


def never_started(playback_id: str) -> TimerFired:
    """The start watchdog of `playback_id` fires: Asterisk never reported it started."""
    return TimerFired(playback_id + "-start")


def started(settings: IvrSettings | None = None) -> CallFlow:
    """A flow whose menu prompt ch1-p1 is playing (Asterisk reported its start)."""
    flow = CallFlow(settings or SIMPLE)
    start = flow.settings.playback_start_timeout
    assert flow.handle(StasisStart(CH, ())) == play("ch1-p1", PROMPT, start)
    begins(flow, "ch1-p1", flow.settings.playback_timeout)
    return flow


def test_every_playback_is_watched_for_its_start_then_for_playback_timeout() -> None:
    flow = started(simple(playback_timeout=7, playback_start_timeout=2))
    assert flow.handle(ChannelDtmfReceived("1")) == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-watchdog"),
        RequestCallback(
            "+79001234567",
            context=(("language", "en"), ("uniqueid", "ch1"), ("profile", "default")),
        ),
        StartTimer("ch1-store2", 10.0),
    ]
    assert flow.handle(CallbackStored()) == [
        CancelTimer("ch1-store2"),
        *play("ch1-p3", GOODBYE, 2),
    ]
    begins(flow, "ch1-p3", 7)
    assert flow.handle(PlaybackFinished("ch1-p3")) == [CancelTimer("ch1-p3-watchdog"), Hangup()]


@pytest.mark.parametrize("name", ["playback_timeout", "playback_start_timeout", "store_timeout"])
def test_timeouts_must_be_positive(name: str) -> None:
    zero: dict[str, Any] = {name: 0.0}
    with pytest.raises(ValueError, match=f"{name} must be greater than 0"):
        simple(**zero)


def test_menu_prompt_that_never_starts_counts_as_failed_after_the_start_timeout() -> None:
    flow = CallFlow(SIMPLE)
    flow.handle(StasisStart(CH, ()))
    assert flow.handle(never_started("ch1-p1")) == [StopPlayback("ch1-p1"), TO_MENU]
    assert flow.outcome is Outcome.PROMPT_FAILED
    assert flow.warning == (
        "the menu playback ch1-p1 did not start in time; "
        "stopped it and carried on as if it had failed"
    )
    # A start reported after the watchdog gave up is late news.
    assert flow.handle(PlaybackStarted("ch1-p1")) == []


def test_goodbye_that_never_starts_still_hangs_up() -> None:
    flow = CallFlow(SIMPLE)
    flow.handle(StasisStart(CH, ("breakout", "1")))
    flow.handle(CallbackStored())  # goodbye, ch1-p2
    assert flow.handle(never_started("ch1-p2")) == [StopPlayback("ch1-p2"), Hangup()]
    assert flow.outcome is Outcome.CALLBACK


def test_a_start_watchdog_of_a_replaced_playback_is_ignored() -> None:
    flow = CallFlow(simple(attempts=2))
    flow.handle(StasisStart(CH, ()))
    flow.handle(PlaybackFinished("ch1-p1"))  # ended without a start report (failed early)
    flow.handle(TimerFired("ch1-digit2"))  # the menu again, as ch1-p3
    assert flow.handle(never_started("ch1-p1")) == []
    assert flow.handle(PlaybackStarted("ch1-p1")) == []
    assert flow.playing == "ch1-p3"


def test_stuck_menu_prompt_stops_it_and_continues_in_the_dialplan() -> None:
    flow = started()
    assert flow.handle(stuck("ch1-p1")) == [StopPlayback("ch1-p1"), TO_MENU]
    assert flow.outcome is Outcome.PROMPT_FAILED
    assert flow.ending is Ending.CONTINUED
    assert flow.anomaly is None
    assert flow.warning == (
        "the menu playback ch1-p1 neither finished nor failed within 120 s; "
        "stopped it and carried on as if it had failed"
    )
    # Reported once; the stopped playback may still report its end, late.
    assert flow.handle(PlaybackFinished("ch1-p1")) == []
    assert flow.warning is None


def test_stuck_menu_prompt_follows_on_prompt_failure_sorry() -> None:
    flow = started(simple(on_prompt_failure="sorry"))
    assert flow.handle(stuck("ch1-p1")) == [StopPlayback("ch1-p1"), *play("ch1-p2", SORRY)]
    assert flow.outcome is Outcome.PROMPT_FAILED


def test_stuck_menu_prompt_follows_on_prompt_failure_wait() -> None:
    flow = started(simple(on_prompt_failure="wait"))
    assert flow.handle(stuck("ch1-p1")) == [
        StopPlayback("ch1-p1"),
        StartTimer("ch1-digit2", 3.0),
    ]
    assert flow.state is State.WAITING


def test_stuck_notice_still_repeats_the_menu() -> None:
    flow = started(simple(attempts=2, invalid_prompt="option-is-invalid"))
    flow.handle(ChannelDtmfReceived("7"))
    assert flow.state is State.NOTICE
    begins(flow, "ch1-p2")
    assert flow.handle(stuck("ch1-p2")) == [StopPlayback("ch1-p2"), *play("ch1-p3", PROMPT)]
    # The first prompt's watchdog was called off when the key stopped it.
    assert flow.handle(stuck("ch1-p1")) == []
    assert flow.warning is None


def test_stuck_confirmation_goes_on_to_goodbye() -> None:
    flow = started(simple(confirmation="custom/IVR_DND_CALLBACK_CONFIRMED"))
    flow.handle(ChannelDtmfReceived("1"))
    assert flow.handle(CallbackStored()) == [
        CancelTimer("ch1-store2"),
        *play("ch1-p3", CONFIRMATION),
    ]
    begins(flow, "ch1-p3")
    assert flow.handle(stuck("ch1-p3")) == [StopPlayback("ch1-p3"), *play("ch1-p4", GOODBYE)]
    assert flow.outcome is Outcome.CALLBACK


def test_stuck_sorry_goes_on_to_goodbye_and_stuck_goodbye_hangs_up() -> None:
    flow = started()
    flow.handle(ChannelDtmfReceived("7"))
    assert flow.state is State.SORRY
    begins(flow, "ch1-p2")
    assert flow.handle(stuck("ch1-p2")) == [StopPlayback("ch1-p2"), *play("ch1-p3", GOODBYE)]
    begins(flow, "ch1-p3")
    assert flow.handle(stuck("ch1-p3")) == [StopPlayback("ch1-p3"), Hangup()]
    assert flow.warning is not None and flow.warning.startswith("the goodbye playback ch1-p3")
    assert flow.outcome is Outcome.INVALID
    assert flow.ending is Ending.HUNG_UP


def test_a_watchdog_that_fires_after_its_playback_ended_is_ignored() -> None:
    flow = started(simple(attempts=2))
    flow.handle(PlaybackFinished("ch1-p1"))
    flow.handle(TimerFired("ch1-digit2"))  # silence: the menu again, as ch1-p3
    assert flow.handle(stuck("ch1-p1")) == []  # cancelled, but the shell was late
    assert flow.state is State.MENU
    assert flow.playing == "ch1-p3"


def test_hang_up_or_shutdown_during_a_playback_leaves_no_watchdog() -> None:
    flow = started()
    # The shell drops a finished call's timers: no command after a hang-up.
    assert flow.handle(ChannelHangupRequest()) == []
    assert flow.handle(stuck("ch1-p1")) == []
    flow = started()
    assert flow.handle(DrainEnded()) == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-watchdog"),
        TO_MENU,
    ]
    flow = CallFlow(SIMPLE)
    flow.handle(StasisStart(CH, ()))
    assert flow.handle(DrainEnded()) == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-start"),
        TO_MENU,
    ]
