"""Outputs of the call flow: what the shell must do next for this call.

Commands carry no channel id: each flow belongs to one call and the shell
knows which channel that is.
"""

from __future__ import annotations

from dataclasses import dataclass

from stasis_dnd.settings import DialplanTarget


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class Play:
    """Play `media` in `language`: one ARI media URI ("sound:vm-goodbye"), or
    several joined by commas, played one after the other as one playback
    ("sound:custom/IVR_DND_READBACK,sound:digits/7,sound:digits/9,...").

    The flow chooses `playback_id`, so it knows the id before any event for it.
    """

    playback_id: str
    media: str
    language: str


@dataclass(frozen=True, slots=True)
class StopPlayback:
    playback_id: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver `TimerFired(timer_id)` to this call after `seconds`."""

    timer_id: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True, slots=True)
class RequestCallback:
    """Store a callback request for `phone`, the number to call (`+` and digits
    only, matching `[ivr] number_pattern`).

    `caller_id` is the caller's own number, cleaned the same way, when the
    caller keyed in a different one; else "". `context` holds the facts about
    the call the CRM may receive, as (fact name, clean value) pairs
    (`core.context`). The shell answers with `CallbackStored` or
    `CallbackNotStored`.
    """

    phone: str
    caller_id: str = ""
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class ContinueInDialplan:
    """Send the channel back to the dialplan: to `target`, or to the priority
    after `Stasis()` when it is None."""

    target: DialplanTarget | None = None


Command = (
    Answer
    | Play
    | StopPlayback
    | StartTimer
    | CancelTimer
    | RequestCallback
    | Hangup
    | ContinueInDialplan
)
