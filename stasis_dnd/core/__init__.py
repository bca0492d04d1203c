"""The call flow as a pure state machine: events in, commands out, no I/O.

Nothing in this package imports networking, threads, clocks or storage; time
arrives as `TimerFired` events. `flow.CallFlow` is the machine, `states` its
states and outcomes, `table` its transitions, `events` and `commands` what
goes in and out, `callerid` the caller's number.

The rules, matching the original dialplan IVR (Answer, Wait(1),
Background(prompt), WaitExten with a 3 s digit timeout):

1. A channel that is not `Up` is answered, then the flow pauses briefly so
   the caller's audio path is open. An answered channel starts at once.
2. The menu prompt plays. A key pressed during it stops it at once (as
   `Background()` does; ARI does not stop playbacks on DTMF by itself).
3. After the prompt the flow waits `digit_timeout` for a key.
4. The accepted key leads to the number to call (rules 10 to 12), then
   files a callback request (`RequestCallback`); only when the shell says it
   is stored does the caller hear the confirmation (or, for a number that
   already has a request, that it is registered) and goodbye, then the flow
   hangs up. If it could not be stored, or the shell has not answered within
   `store_timeout` (a hung disk), the caller hears sorry and goodbye: no
   promise that cannot be kept.
5. Any other key, or silence: the menu is repeated while attempts remain
   (after the optional "invalid" notice), then sorry, goodbye, hang up.
6. The caller may hang up at any moment: from then on no command is issued,
   and a callback already requested stays requested.
7. A menu prompt that fails to play is not silence: by default the call is
   continued in the dialplan, whose fallback serves the caller. So is a call
   still here when the app shuts down (`DrainEnded`), or one that arrives
   after it (the shell sends `DrainEnded` before `StasisStart`). The flow says
   where: a caller whose request is stored to `continue_stored_to` (goodbye
   only), anyone else to `continue_to` (the dialplan's menu); a drain that
   finds the request being stored waits for the answer first. A playback
   that has not started within `playback_start_timeout`, or neither finishes
   nor fails within `playback_timeout` (both seen on Asterisk 22 after a
   freeze), is stopped and treated as failed: no wait is unbounded. The first
   prompt after a recovery waits `playback_timeout` to start: a prompt of the
   previous app instance may still be playing ahead of it (Asterisk queues
   plays per channel, and ARI cannot list or stop another process's plays).
8. A caller who pressed the key while still in the queue (`Stasis()` args
   `breakout,<key>`) goes straight to rule 4.
9. Every number the CRM gets, from the caller id or keyed in, matches
   `number_pattern` after `number_rewrite`. A caller id that does not is
   no number: after the key the caller is told so and asked to key one in
   (`hidden_number_entry`), or, with that off, hears sorry and goodbye.
10. Read-back (`readback`): "we will call you back at", the number digit by
   digit, "press 1 to confirm, 2 to enter another number", as one playback a
   key stops. `confirm_digit` (or silence, with `silence_confirms`) files the
   request, `change_digit` asks for another number; a wrong key repeats the
   read-back up to `confirm_attempts` times, then sorry.
11. Entry: the entry prompt, then digits with `entry_digit_timeout` between
   them; `#`, that timeout or `entry_max_digits` ends the number, `*` starts
   over. An invalid number gets the invalid notice and another try; every
   number asked for (also after `change_digit`) counts against
   `entry_attempts`, then sorry. A valid one is read back as in rule 10.
12. The request carries the caller's own number too when it passed the rules
   and differs from the number to call.
13. Business hours are decided by the shell, which says with `StasisStart`
   (and `CallRecovered`) whether the call came within them (`open`). Outside
   them `outside_hours` says what happens: `continue` hands the call to
   `closed_continue_to` at once, unanswered; `announce` answers (rule 1),
   plays `closed_prompt`, goodbye and hangs up, filing nothing; `offer` runs
   rules 2 to 12 as usual, but a stored request is confirmed with
   `next_day_confirmation`. A recovered call whose request is stored only
   hears goodbye, open or not.
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
from stasis_dnd.core.flow import CallFlow
from stasis_dnd.core.states import Ending, Outcome, State

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
