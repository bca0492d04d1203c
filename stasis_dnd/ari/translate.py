"""ARI event JSON -> (channel id, core event).

Only what the flow needs is taken. Events the flow has no use for return
None; a message that lacks a field the flow needs, or has it with the wrong
type, raises `BadEvent` so the runtime can log it and go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stasis_dnd.core import (
    Channel,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Event,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
)

# The event types translate() turns into core events; with ApplicationReplaced
# (the runtime's) the only ones the app asks Asterisk to send.
HANDLED_TYPES = frozenset(
    {
        "StasisStart",
        "ChannelDtmfReceived",
        "PlaybackStarted",
        "PlaybackFinished",
        "ChannelHangupRequest",
        "StasisEnd",
    }
)

# ARI events that mean nothing to the flow (kept explicit to tell them from
# types we have never heard of).
IGNORED_TYPES = frozenset(
    {
        "ChannelStateChange",
        "ChannelDestroyed",
        "ChannelVarset",
        "ChannelDialplan",
        "ChannelCallerId",
        "ChannelConnectedLine",
        "ChannelTalkingStarted",
        "ChannelTalkingFinished",
        "ChannelHold",
        "ChannelUnhold",
        "ChannelToneDetected",
        "ChannelEnteredBridge",
        "ChannelLeftBridge",
        "PlaybackContinuing",
        "ApplicationMoveFailed",
    }
)
_PLAYBACK_TARGET = "channel:"
_MAX_ID = 128
_MAX_TEXT = 256


class BadEvent(ValueError):
    """An ARI message the app cannot use; the message says why."""


# The Stasis() arguments the app reads at most (a reason, a key and the facts).
MAX_ARGS = 8


def channel_of(data: Mapping[str, Any]) -> Channel:
    """The `Channel` described by an ARI channel object."""
    if not isinstance(data, Mapping):
        raise BadEvent("channel is not an object")
    caller = data.get("caller") or {}
    if not isinstance(caller, Mapping):
        raise BadEvent("channel.caller is not an object")
    return Channel(
        id=_id(data.get("id"), "channel.id"),
        state=_text(data.get("state"), "channel.state"),
        caller_name=_text(caller.get("name"), "channel.caller.name"),
        caller_number=_text(caller.get("number"), "channel.caller.number"),
        language=_text(data.get("language"), "channel.language"),
        linkedid=_text(data.get("linkedid"), "channel.linkedid"),
    )


def stasis_args_of(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The arguments of the `Stasis()` an ARI channel object is in (its
    `dialplan.app_data` after the app name), or () when it tells none."""
    dialplan = data.get("dialplan") if isinstance(data, Mapping) else None
    if not isinstance(dialplan, Mapping) or str(dialplan.get("app_name", "")).lower() != "stasis":
        return ()
    app_data = dialplan.get("app_data")
    if not isinstance(app_data, str):
        return ()
    # Asterisk splits on commas too (quotes aside, which these arguments do not use).
    return tuple(_text(arg, "dialplan.app_data") for arg in app_data.split(",")[1 : MAX_ARGS + 1])


def translate(message: Mapping[str, Any]) -> tuple[str, Event] | None:
    """The channel id and core event for an ARI message, or None to skip it."""
    kind = message.get("type")
    if kind == "StasisStart":
        args = message.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise BadEvent("StasisStart.args is not a list of strings")
        channel = channel_of(message.get("channel"))  # type: ignore[arg-type]
        args = [_text(a, "args") for a in args[:MAX_ARGS]]
        return channel.id, StasisStart(channel, tuple(args))
    if kind == "ChannelDtmfReceived":
        digit = message.get("digit")
        if not isinstance(digit, str) or len(digit) != 1:
            raise BadEvent("ChannelDtmfReceived.digit is not one character")
        return _channel_id(message), ChannelDtmfReceived(digit)
    if kind in ("PlaybackStarted", "PlaybackFinished"):
        playback = message.get("playback")
        if not isinstance(playback, Mapping):
            raise BadEvent(f"{kind}.playback is not an object")
        target = playback.get("target_uri")
        if not isinstance(target, str) or not target.startswith(_PLAYBACK_TARGET):
            return None  # a playback on a bridge or elsewhere: not ours
        channel_id = _id(target[len(_PLAYBACK_TARGET) :], "playback.target_uri")
        playback_id = _id(playback.get("id"), "playback.id")
        if kind == "PlaybackStarted":
            return channel_id, PlaybackStarted(playback_id)
        state = _text(playback.get("state"), "playback.state") or "done"
        return channel_id, PlaybackFinished(playback_id, state)
    if kind == "ChannelHangupRequest":
        return _channel_id(message), ChannelHangupRequest()
    if kind == "StasisEnd":
        return _channel_id(message), StasisEnd()
    if kind in IGNORED_TYPES:
        return None
    raise BadEvent(f"unknown event type {str(kind)[:40]!r}")


def _channel_id(message: Mapping[str, Any]) -> str:
    channel = message.get("channel")
    if not isinstance(channel, Mapping):
        raise BadEvent(f"{message.get('type')}.channel is not an object")
    return _id(channel.get("id"), "channel.id")


def _id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise BadEvent(f"{name} is missing or not a short string")
    if not value.isascii() and _unencodable(value):
        # An id no request path or log line can carry.
        raise BadEvent(f"{name} is not valid Unicode text")
    return value


def _text(value: object, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadEvent(f"{name} is not a string")
    text = value[:_MAX_TEXT]
    if text.isascii() or not _unencodable(text):
        return text
    return text.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"


def _unencodable(text: str) -> bool:
    # JSON can escape a lone surrogate ("\ud800"); UTF-8 cannot carry it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
