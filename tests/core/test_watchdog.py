"""The playback watchdog: a playback that never ends is treated as failed.

Seen on Asterisk 22 after a long freeze: a play request answered 201, then
neither PlaybackStarted nor PlaybackFinished, ever.
"""

from __future__ import annotations

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
    RequestCallback,
    StartTimer,
    StasisStart,
    State,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.settings import IvrSettings

CH = Channel("ch1", "Up", "", "+79001234567", "en")
PROMPT = "sound:custom/IVR_DND_OPERATORS"
NOTICE = "sound:option-is-invalid"
CONFIRMATION = "sound:custom/IVR_DND_CALLBACK_CONFIRMED"
SORRY = "sound:sorry-youre-having-problems"
GOODBYE = "sound:vm-goodbye"


def play(playback_id: str, media: str, timeout: float = 120.0) -> list[Command]:
    return [Play(playback_id, media, "en"), StartTimer(playback_id + "-watchdog", timeout)]


def stuck(playback_id: str) -> TimerFired:
    """The watchdog of `playback_id` fires: it neither finished nor failed."""
    return TimerFired(playback_id + "-watchdog")


def started(settings: IvrSettings | None = None) -> CallFlow:
    flow = CallFlow(settings)
    timeout = flow.settings.playback_timeout
    assert flow.handle(StasisStart(CH, ())) == play("ch1-p1", PROMPT, timeout)
    return flow


def test_every_playback_is_watched_for_playback_timeout() -> None:
    flow = started(IvrSettings(playback_timeout=7))
    assert flow.handle(ChannelDtmfReceived("1")) == [
        StopPlayback("ch1-p1"),
        CancelTimer("ch1-p1-watchdog"),
        RequestCallback("+79001234567"),
    ]
    assert flow.handle(CallbackStored()) == play("ch1-p2", GOODBYE, 7)


def test_playback_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="playback_timeout must be greater than 0"):
        IvrSettings(playback_timeout=0)


def test_stuck_menu_prompt_stops_it_and_continues_in_the_dialplan() -> None:
    flow = started()
    assert flow.handle(stuck("ch1-p1")) == [StopPlayback("ch1-p1"), ContinueInDialplan()]
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
    flow = started(IvrSettings(on_prompt_failure="sorry"))
    assert flow.handle(stuck("ch1-p1")) == [StopPlayback("ch1-p1"), *play("ch1-p2", SORRY)]
    assert flow.outcome is Outcome.PROMPT_FAILED


def test_stuck_menu_prompt_follows_on_prompt_failure_wait() -> None:
    flow = started(IvrSettings(on_prompt_failure="wait"))
    assert flow.handle(stuck("ch1-p1")) == [
        StopPlayback("ch1-p1"),
        StartTimer("ch1-digit2", 3.0),
    ]
    assert flow.state is State.WAITING


def test_stuck_notice_still_repeats_the_menu() -> None:
    flow = started(IvrSettings(attempts=2, invalid_prompt="option-is-invalid"))
    flow.handle(ChannelDtmfReceived("7"))
    assert flow.state is State.NOTICE
    assert flow.handle(stuck("ch1-p2")) == [StopPlayback("ch1-p2"), *play("ch1-p3", PROMPT)]
    # The first prompt's watchdog was called off when the key stopped it.
    assert flow.handle(stuck("ch1-p1")) == []
    assert flow.warning is None


def test_stuck_confirmation_goes_on_to_goodbye() -> None:
    flow = started(IvrSettings(confirmation="custom/IVR_DND_CALLBACK_CONFIRMED"))
    flow.handle(ChannelDtmfReceived("1"))
    assert flow.handle(CallbackStored()) == play("ch1-p2", CONFIRMATION)
    assert flow.handle(stuck("ch1-p2")) == [StopPlayback("ch1-p2"), *play("ch1-p3", GOODBYE)]
    assert flow.outcome is Outcome.CALLBACK


def test_stuck_sorry_goes_on_to_goodbye_and_stuck_goodbye_hangs_up() -> None:
    flow = started()
    flow.handle(ChannelDtmfReceived("7"))
    assert flow.state is State.SORRY
    assert flow.handle(stuck("ch1-p2")) == [StopPlayback("ch1-p2"), *play("ch1-p3", GOODBYE)]
    assert flow.handle(stuck("ch1-p3")) == [StopPlayback("ch1-p3"), Hangup()]
    assert flow.warning is not None and flow.warning.startswith("the goodbye playback ch1-p3")
    assert flow.outcome is Outcome.INVALID
    assert flow.ending is Ending.HUNG_UP


def test_a_watchdog_that_fires_after_its_playback_ended_is_ignored() -> None:
    flow = started(IvrSettings(attempts=2))
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
        ContinueInDialplan(),
    ]
