"""The states of a call flow, how a call left the app and what it achieved,
and the groups of states the transition table is built from."""

from __future__ import annotations

import enum


class State(enum.Enum):
    NEW = "new"  # nothing seen yet
    PAUSING = "pausing"  # answered; the short pause before the menu
    MENU = "menu"  # the menu prompt is playing; a key stops it
    NOTICE = "notice"  # the "invalid" notice before the menu repeats
    WAITING = "waiting"  # the menu has played; waiting for a key
    READBACK = "readback"  # reading the number back; a key stops it
    CONFIRM_WAIT = "confirm_wait"  # the read-back has played; waiting for confirm or change
    ENTRY_PROMPT = "entry_prompt"  # asking for a number; a key stops it and is typed
    ENTERING = "entering"  # collecting the digits of a number
    STORING = "storing"  # callback requested; waiting for the shell to store it
    CONFIRMING = "confirming"  # playing the confirmation
    SORRY = "sorry"  # playing the apology
    CLOSED = "closed"  # outside business hours: playing the closed message
    GOODBYE = "goodbye"  # playing goodbye; hang up after it
    HUNG_UP = "hung_up"  # we hung up (final)
    CONTINUED = "continued"  # we sent the call back to the dialplan (final)
    CALLER_GONE = "caller_gone"  # the caller hung up or the channel vanished (final)


class Ending(enum.Enum):
    """How the call left the app."""

    HUNG_UP = "hung_up"
    CONTINUED = "continued"
    CALLER_GONE = "caller_gone"


class Outcome(enum.Enum):
    """What the call achieved, for logs and metrics."""

    CALLBACK = "callback"  # a callback request is stored
    CALLBACK_FAILED = "callback_failed"  # the key was pressed but nothing could be stored
    TIMEOUT = "timeout"  # no key pressed
    INVALID = "invalid"  # only wrong keys pressed
    NO_CALLERID = "no_callerid"  # nothing to call back
    NOT_CONFIRMED = "not_confirmed"  # the read-back was answered only with wrong keys
    INVALID_NUMBER = "invalid_number"  # no valid number keyed in within entry_attempts
    ALREADY_REQUESTED = "already_requested"  # the number has a request already
    PROMPT_FAILED = "prompt_failed"  # the menu prompt could not be played
    ABANDONED = "abandoned"  # the caller hung up before choosing
    SHUTDOWN = "shutdown"  # the app shut down mid-call
    CLOSED = "closed"  # outside business hours: told so, or sent back to the dialplan


FINAL = {
    State.HUNG_UP: Ending.HUNG_UP,
    State.CONTINUED: Ending.CONTINUED,
    State.CALLER_GONE: Ending.CALLER_GONE,
}
LIVE = tuple(s for s in State if s is not State.NEW and s not in FINAL)
# States in which a key stops the playing prompt and counts as the answer.
KEY_STOPS_PROMPT = (State.MENU, State.NOTICE, State.READBACK, State.ENTRY_PROMPT)
# States in which a playback is under way, watched by a `playback_timeout` timer.
PLAYING = (
    State.MENU,
    State.NOTICE,
    State.READBACK,
    State.ENTRY_PROMPT,
    State.CONFIRMING,
    State.SORRY,
    State.CLOSED,
    State.GOODBYE,
)


def media_uri(name: str) -> str:
    """An ARI media URI for a configured sound ("vm-goodbye" -> "sound:vm-goodbye")."""
    return name if ":" in name else "sound:" + name
