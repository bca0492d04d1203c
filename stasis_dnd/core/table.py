"""The call flow's transitions: a table keyed by (state, event type).

Pairs that are expected but need no action, such as the `PlaybackFinished` of
a prompt the flow stopped, are listed as ignored. Any other pair is an
anomaly (see `CallFlow.handle`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stasis_dnd.core.commands import Command
from stasis_dnd.core.events import (
    CallbackNotStored,
    CallbackStored,
    CallRecovered,
    ChannelDtmfReceived,
    ChannelGone,
    ChannelHangupRequest,
    DrainEnded,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
    TimerFired,
)
from stasis_dnd.core.states import FINAL, LIVE, PLAYING, State

if TYPE_CHECKING:
    from stasis_dnd.core.flow import CallFlow

Handler = Callable[["CallFlow", Any], list[Command]]

_EXPECTED_ANYTIME: tuple[type, ...] = (
    PlaybackStarted,
    ChannelDtmfReceived,
    TimerFired,
    PlaybackFinished,
)
_LATE_NEWS: tuple[type, ...] = (
    ChannelHangupRequest,
    StasisEnd,
    ChannelGone,
    ChannelDtmfReceived,
    PlaybackStarted,
    PlaybackFinished,
    TimerFired,
    CallbackStored,
    CallbackNotStored,
    DrainEnded,
)


def build_table(flow: type[CallFlow]) -> dict[tuple[State, type], Handler]:
    table: dict[tuple[State, type], Handler] = {
        (State.NEW, StasisStart): flow._on_stasis_start,
        (State.NEW, CallRecovered): flow._on_recovered,
        (State.NEW, DrainEnded): flow._on_drain_before_start,
        (State.PAUSING, TimerFired): flow._on_pause_over,
        (State.MENU, PlaybackFinished): flow._on_menu_finished,
        (State.NOTICE, PlaybackFinished): flow._on_notice_finished,
        (State.WAITING, ChannelDtmfReceived): flow._on_key_while_waiting,
        (State.WAITING, TimerFired): flow._on_digit_timeout,
        (State.READBACK, PlaybackFinished): flow._on_readback_finished,
        (State.READBACK, ChannelDtmfReceived): flow._on_key_during_readback,
        (State.CONFIRM_WAIT, ChannelDtmfReceived): flow._on_key_while_confirming,
        (State.CONFIRM_WAIT, TimerFired): flow._on_confirm_timeout,
        (State.ENTRY_PROMPT, PlaybackFinished): flow._on_entry_prompt_finished,
        (State.ENTRY_PROMPT, ChannelDtmfReceived): flow._on_key_during_entry_prompt,
        (State.ENTERING, ChannelDtmfReceived): flow._on_key_while_entering,
        (State.ENTERING, TimerFired): flow._on_entry_timeout,
        (State.STORING, CallbackStored): flow._on_stored,
        (State.STORING, CallbackNotStored): flow._on_not_stored,
        (State.STORING, TimerFired): flow._on_store_timeout,
        (State.STORING, DrainEnded): flow._on_drain_while_storing,
        (State.CONFIRMING, PlaybackFinished): flow._on_confirmation_finished,
        (State.SORRY, PlaybackFinished): flow._on_sorry_finished,
        # Goodbye after the closed message, as after sorry.
        (State.CLOSED, PlaybackFinished): flow._on_sorry_finished,
        (State.GOODBYE, PlaybackFinished): flow._on_goodbye_finished,
    }
    for state in PLAYING:
        table[(state, TimerFired)] = flow._on_playback_stuck
        table[(state, PlaybackStarted)] = flow._on_playback_started
    for state in (State.MENU, State.NOTICE):
        table[(state, ChannelDtmfReceived)] = flow._on_key_during_prompt
    # The caller can leave at any moment, even before the flow has started.
    for state in (State.NEW, *LIVE):
        for gone in (ChannelHangupRequest, StasisEnd, ChannelGone):
            table[(state, gone)] = flow._on_caller_gone
    for state in LIVE:
        table.setdefault((state, DrainEnded), flow._on_drain_ended)
        # Expected, nothing to do: playbacks report starting; keys outside
        # the menu (during the pause, as Wait() does, or after the choice) and
        # timers or playbacks that were replaced are dropped.
        for expected in _EXPECTED_ANYTIME:
            table.setdefault((state, expected), flow._ignore)

    # An answer from the outbox after store_timeout, while sorry or goodbye plays.
    for state in (State.SORRY, State.GOODBYE):
        table[(state, CallbackStored)] = flow._on_late_stored
        table[(state, CallbackNotStored)] = flow._ignore
    # After the end only late news arrives: the flow has nothing more to say.
    for state in FINAL:
        for late in _LATE_NEWS:
            table[(state, late)] = flow._ignore
    return table
