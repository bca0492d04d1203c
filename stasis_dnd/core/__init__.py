"""The call flow as a pure state machine: events in, commands out, no I/O.

Nothing in this package imports networking, threads, clocks or storage; time
arrives as `TimerFired` events. See `flow.py` for the rules.
"""

from stasis_dnd.core.callerid import normalize_number
from stasis_dnd.core.commands import (
    Answer,
    CancelTimer,
    Command,
    ContinueInDialplan,
    Hangup,
    Play,
    RequestCallback,
    StartTimer,
    StopPlayback,
)
from stasis_dnd.core.events import (
    CallbackNotStored,
    CallbackStored,
    CallRecovered,
    Channel,
    ChannelDtmfReceived,
    ChannelGone,
    ChannelHangupRequest,
    DrainEnded,
    Event,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
    TimerFired,
)
from stasis_dnd.core.flow import CallFlow, Ending, Outcome, State

__all__ = [
    "Answer",
    "CallFlow",
    "CallRecovered",
    "CallbackNotStored",
    "CallbackStored",
    "CancelTimer",
    "Channel",
    "ChannelDtmfReceived",
    "ChannelGone",
    "ChannelHangupRequest",
    "Command",
    "ContinueInDialplan",
    "DrainEnded",
    "Ending",
    "Event",
    "Hangup",
    "Outcome",
    "Play",
    "PlaybackFinished",
    "PlaybackStarted",
    "RequestCallback",
    "StartTimer",
    "StasisEnd",
    "StasisStart",
    "State",
    "StopPlayback",
    "TimerFired",
    "normalize_number",
]
