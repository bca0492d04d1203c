"""Inputs of the call flow.

ARI events keep ARI's names (`StasisStart`, `ChannelDtmfReceived`, ...) and
carry only the fields the flow needs; the shell builds them from ARI's JSON.
Our own events are named in the past tense for what happened.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Channel:
    """The caller's channel as ARI describes it in `StasisStart`."""

    id: str
    state: str = "Up"
    caller_name: str = ""
    caller_number: str = ""
    language: str = "en"
    # The id shared by every channel of the call (ARI's `linkedid`); "" if not given.
    linkedid: str = ""


# --- ARI events -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StasisStart:
    """The channel entered the app; `args` are the `Stasis(app,...)` arguments.

    `open`: whether it is within business hours now (the shell decides).
    """

    channel: Channel
    args: tuple[str, ...] = ()
    open: bool = True


@dataclass(frozen=True, slots=True)
class ChannelDtmfReceived:
    """The caller pressed (and released) a key."""

    digit: str


@dataclass(frozen=True, slots=True)
class PlaybackStarted:
    playback_id: str


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """A playback ended: `state` is "done" (also when stopped) or "failed"."""

    playback_id: str
    state: str = "done"


@dataclass(frozen=True, slots=True)
class ChannelHangupRequest:
    """The caller hung up (or something asked to hang the channel up)."""


@dataclass(frozen=True, slots=True)
class StasisEnd:
    """The channel left the app: hung up, or continued in the dialplan."""


# --- our own events ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecovered:
    """The app (re)connected and found this channel parked in it.

    `callback_stored` says whether this caller's callback request is already
    stored, so the flow does not offer or file it twice. `open`: whether it
    is within business hours now, decided afresh as for a new call. `args`:
    the `Stasis()` arguments, as far as the shell still knows them.
    """

    channel: Channel
    callback_stored: bool = False
    open: bool = True
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer the flow started with `StartTimer` ran out."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class CallbackStored:
    """The callback request is stored durably (or already delivered).

    `already_requested`: the number has a request within the dedupe window,
    so nothing new was filed; the caller is told so.
    """

    already_requested: bool = False


@dataclass(frozen=True, slots=True)
class CallbackNotStored:
    """The callback request could be neither stored nor delivered."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChannelGone:
    """An ARI operation failed because the channel no longer exists or has
    left the app (ARI answered 404, 409 or 412)."""


@dataclass(frozen=True, slots=True)
class DrainEnded:
    """The app is shutting down and the drain period for this call is over."""


Event = (
    StasisStart
    | ChannelDtmfReceived
    | PlaybackStarted
    | PlaybackFinished
    | ChannelHangupRequest
    | StasisEnd
    | CallRecovered
    | TimerFired
    | CallbackStored
    | CallbackNotStored
    | ChannelGone
    | DrainEnded
)
