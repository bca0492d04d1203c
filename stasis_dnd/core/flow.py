"""The call flow: one pure state machine per caller.

Theory of operation
-------------------
The shell feeds every ARI event of one channel, and every outcome of its own
I/O, into `CallFlow.handle()`, which returns the commands to carry out, in
order. The flow never waits: time passes only as `TimerFired` events for the
timers it asked for, and I/O results come back as events.

The rules, matching the original dialplan IVR (Answer, Wait(1),
Background(prompt), WaitExten with a 3 s digit timeout):

1. A channel that is not `Up` is answered, then the flow pauses briefly so
   the caller's audio path is open. An answered channel starts at once.
2. The menu prompt plays. A key pressed during it stops it at once (as
   `Background()` does; ARI does not stop playbacks on DTMF by itself).
3. After the prompt the flow waits `digit_timeout` for a key.
4. The accepted key files a callback request (`RequestCallback`); only when
   the shell says it is stored does the caller hear the confirmation (if any)
   and goodbye, then the flow hangs up. If it could not be stored, or the
   shell has not answered within `store_timeout` (a hung disk), the caller
   hears sorry and goodbye: no promise that cannot be kept.
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
9. A caller without a usable number is never offered a callback: sorry,
   goodbye.

Transitions are a table keyed by (state, event type). Pairs that are expected
but need no action, such as the `PlaybackFinished` of a prompt we stopped, are
listed as ignored. Any other pair is an anomaly: it is ignored too, and
described in `CallFlow.anomaly` for the shell to log; the flow never raises.
Trouble the operator must hear of, such as a stuck playback, is described in
`CallFlow.warning` instead.

Every live state has exactly one timer running, in `_timer`: the pause, the
digit timeout, the bound on storing, or the watchdog of the playback under
way (until it starts, then until it ends).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from stasis_dnd.core.callerid import phone_of
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
from stasis_dnd.settings import IvrSettings

# The first `Stasis()` argument that marks a queue break-out.
BREAKOUT_ARG = "breakout"


class State(enum.Enum):
    NEW = "new"  # nothing seen yet
    PAUSING = "pausing"  # answered; the short pause before the menu
    MENU = "menu"  # the menu prompt is playing; a key stops it
    NOTICE = "notice"  # the "invalid" notice before the menu repeats
    WAITING = "waiting"  # the menu has played; waiting for a key
    STORING = "storing"  # callback requested; waiting for the shell to store it
    CONFIRMING = "confirming"  # playing the confirmation
    SORRY = "sorry"  # playing the apology
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
    PROMPT_FAILED = "prompt_failed"  # the menu prompt could not be played
    ABANDONED = "abandoned"  # the caller hung up before choosing
    SHUTDOWN = "shutdown"  # the app shut down mid-call


_FINAL = {
    State.HUNG_UP: Ending.HUNG_UP,
    State.CONTINUED: Ending.CONTINUED,
    State.CALLER_GONE: Ending.CALLER_GONE,
}
_LIVE = tuple(s for s in State if s is not State.NEW and s not in _FINAL)
# States in which a key stops the playing prompt and counts as the answer.
_KEY_STOPS_PROMPT = (State.MENU, State.NOTICE)
# States in which a playback is under way, watched by a `playback_timeout` timer.
_PLAYING = (State.MENU, State.NOTICE, State.CONFIRMING, State.SORRY, State.GOODBYE)
_PAUSE_TIMER = "pause"
_DIGIT_TIMER = "digit"
_STORE_TIMER = "store"

_Handler = Callable[["CallFlow", Any], list[Command]]


def media_uri(name: str) -> str:
    """An ARI media URI for a configured sound ("vm-goodbye" -> "sound:vm-goodbye")."""
    return name if ":" in name else "sound:" + name


class CallFlow:
    """The IVR for one call. Feed it events; carry out the commands it returns."""

    def __init__(self, settings: IvrSettings | None = None, *, id_prefix: str = "") -> None:
        self.settings = settings or IvrSettings()
        # Playback and timer ids start with this, so a flow restarted for the
        # same channel (recovery) never reuses an id of its predecessor.
        self._id_prefix = id_prefix
        self.state = State.NEW
        self.channel: Channel | None = None
        self.phone = ""
        self.outcome: Outcome | None = None
        self.callback_requested = False
        # True once the shell said the request is stored (or found it stored).
        self.callback_stored = False
        # Set by `handle()` when the event did not fit the state; else None.
        self.anomaly: str | None = None
        # Set by `handle()` when something went wrong that the operator
        # should see (a playback that never ended); else None.
        self.warning: str | None = None
        self._breakout = False
        self._closing = False
        self._failures = 0
        self._seq = 0
        self._playing: str | None = None
        # Whether Asterisk reported the playback in `_playing` started.
        self._started = False
        # Recovered: the next playback may be queued behind an old one.
        self._behind_old_play = False
        self._timer: str | None = None

    @property
    def playing(self) -> str | None:
        """The id of the playback the flow is waiting on, if any."""
        return self._playing

    @property
    def ending(self) -> Ending | None:
        """How the call ended, or None while it is still in the flow."""
        return _FINAL.get(self.state)

    def handle(self, event: Event) -> list[Command]:
        """Advance the flow by one event and return the commands to carry out."""
        self.anomaly = None
        self.warning = None
        handler = _TABLE.get((self.state, type(event)))
        if handler is None:
            self.anomaly = f"can't handle {type(event).__name__} in state {self.state.value}"
            return []
        return handler(self, event)

    # --- starting -----------------------------------------------------------

    def _on_stasis_start(self, event: StasisStart) -> list[Command]:
        args = event.args
        breakout = (
            len(args) >= 2
            and args[0].lower() == BREAKOUT_ARG
            and args[1] == self.settings.accept_digit
        )
        return self._start(event.channel, breakout=breakout, stored=False)

    def _on_recovered(self, event: CallRecovered) -> list[Command]:
        self._behind_old_play = True
        return self._start(event.channel, breakout=False, stored=event.callback_stored)

    def _on_drain_before_start(self, event: DrainEnded) -> list[Command]:
        self._closing = True
        return []

    def _start(self, channel: Channel, *, breakout: bool, stored: bool) -> list[Command]:
        self.channel = channel
        if stored:
            self.callback_requested = self.callback_stored = True
            self.outcome = Outcome.CALLBACK
        if self._closing:
            # The app is shutting down: the dialplan's fallback serves this caller.
            self.outcome = self.outcome or Outcome.SHUTDOWN
            return self._continue()
        self.phone = phone_of(
            channel.caller_number, channel.caller_name, self.settings.callerid_source
        )
        self._breakout = breakout
        if channel.state == "Up":
            return self._after_pause()
        commands: list[Command] = [Answer()]
        if self.settings.answer_pause > 0:
            self.state = State.PAUSING
            return commands + self._start_timer(_PAUSE_TIMER, self.settings.answer_pause)
        return commands + self._after_pause()

    def _after_pause(self) -> list[Command]:
        if self.callback_requested:
            return self._goodbye()
        if not self.phone:
            self.outcome = Outcome.NO_CALLERID
            return self._sorry()
        if self._breakout:
            return self._request_callback()
        return self._play_menu()

    def _on_pause_over(self, event: TimerFired) -> list[Command]:
        if event.timer_id != self._timer:
            return []  # a timer cancelled or replaced before it fired
        self._timer = None
        return self._after_pause()

    # --- the menu -----------------------------------------------------------

    def _play_menu(self) -> list[Command]:
        self.state = State.MENU
        return self._play(self.settings.prompt)

    def _on_menu_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []  # a playback we stopped earlier
        done = self._playback_over()
        if event.state == "failed":
            return done + self._prompt_failed()
        self.state = State.WAITING
        return done + self._start_timer(_DIGIT_TIMER, self.settings.digit_timeout)

    def _prompt_failed(self) -> list[Command]:
        action = self.settings.on_prompt_failure
        if action == "wait":
            self.state = State.WAITING
            return self._start_timer(_DIGIT_TIMER, self.settings.digit_timeout)
        self.outcome = Outcome.PROMPT_FAILED
        if action == "sorry":
            return self._sorry()
        return self._continue()

    def _on_notice_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []
        # A notice that failed to play is no reason to drop the menu itself.
        return self._playback_over() + self._play_menu()

    def _on_key_during_prompt(self, event: ChannelDtmfReceived) -> list[Command]:
        assert self._playing is not None  # MENU and NOTICE always have a prompt playing
        stop: list[Command] = [StopPlayback(self._playing)]
        return stop + self._playback_over() + self._choose(event.digit)

    def _on_playback_stuck(self, event: TimerFired) -> list[Command]:
        if event.timer_id != self._timer:
            return []  # a timer cancelled or replaced before it fired
        self._timer = None
        stuck = self._playing
        assert stuck is not None  # the watchdog runs only while a playback does
        if self._started:
            what = f"neither finished nor failed within {self.settings.playback_timeout:g} s"
        else:
            what = "did not start in time"
        self.warning = (
            f"the {self.state.value} playback {stuck} {what};"
            " stopped it and carried on as if it had failed"
        )
        # Exactly the path this playback's own failure would take.
        failed = _TABLE[(self.state, PlaybackFinished)](self, PlaybackFinished(stuck, "failed"))
        return [StopPlayback(stuck), *failed]

    def _on_playback_started(self, event: PlaybackStarted) -> list[Command]:
        if event.playback_id != self._playing or self._started:
            return []  # a playback we stopped earlier, or a repeated report
        self._started = True
        # From now on the watchdog waits for the end, however long the sound.
        assert self._playing is not None
        return [*self._cancel_timer(), *self._watch(self._playing + "-watchdog")]

    def _on_key_while_waiting(self, event: ChannelDtmfReceived) -> list[Command]:
        return self._cancel_timer() + self._choose(event.digit)

    def _on_digit_timeout(self, event: TimerFired) -> list[Command]:
        if event.timer_id != self._timer:
            return []
        self._timer = None
        return self._no_choice(Outcome.TIMEOUT)

    def _choose(self, digit: str) -> list[Command]:
        if digit == self.settings.accept_digit:
            return self._request_callback()
        return self._no_choice(Outcome.INVALID)

    def _no_choice(self, outcome: Outcome) -> list[Command]:
        self._failures += 1
        if self._failures < self.settings.attempts:
            if self.settings.invalid_prompt:
                self.state = State.NOTICE
                return self._play(self.settings.invalid_prompt)
            return self._play_menu()
        self.outcome = outcome
        return self._sorry()

    # --- the callback -------------------------------------------------------

    def _request_callback(self) -> list[Command]:
        self.state = State.STORING
        self.callback_requested = True
        self.outcome = Outcome.CALLBACK
        timer = self._start_timer(_STORE_TIMER, self.settings.store_timeout)
        return [RequestCallback(self.phone), *timer]

    def _on_stored(self, event: CallbackStored) -> list[Command]:
        self.callback_stored = True
        done = self._cancel_timer()
        if self._closing:
            return done + self._continue()
        if self.settings.confirmation:
            self.state = State.CONFIRMING
            return done + self._play(self.settings.confirmation)
        return done + self._goodbye()

    def _on_not_stored(self, event: CallbackNotStored) -> list[Command]:
        return self._cancel_timer() + self._not_stored()

    def _on_store_timeout(self, event: TimerFired) -> list[Command]:
        if event.timer_id != self._timer:
            return []
        self._timer = None
        self.warning = (
            f"the callback request was not stored within {self.settings.store_timeout:g} s;"
            " the caller hears sorry (a late answer is delivered all the same)"
        )
        return self._not_stored()

    def _not_stored(self) -> list[Command]:
        self.outcome = Outcome.CALLBACK_FAILED
        if self._closing:
            return self._continue()
        return self._sorry()

    def _on_late_stored(self, event: CallbackStored) -> list[Command]:
        # After store_timeout the caller heard sorry; the request is stored
        # all the same, so a hand-back to the dialplan must not offer the menu.
        if self.callback_requested:
            self.callback_stored = True
        else:
            self.anomaly = "can't handle CallbackStored without a request"
        return []

    def _on_drain_while_storing(self, event: DrainEnded) -> list[Command]:
        # Where the call goes depends on the answer, which is at most
        # store_timeout away: continue once it is in.
        self._closing = True
        return []

    # --- the end ------------------------------------------------------------

    def _sorry(self) -> list[Command]:
        self.state = State.SORRY
        return self._play(self.settings.sorry)

    def _goodbye(self) -> list[Command]:
        self.state = State.GOODBYE
        return self._play(self.settings.goodbye)

    def _on_confirmation_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []
        return self._playback_over() + self._goodbye()

    def _on_sorry_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []
        return self._playback_over() + self._goodbye()

    def _on_goodbye_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []
        self.state = State.HUNG_UP
        return [*self._playback_over(), Hangup()]

    def _on_caller_gone(self, event: Event) -> list[Command]:
        # No commands: the channel is gone; the shell drops the call's timers.
        self.state = State.CALLER_GONE
        if self.outcome is None:
            self.outcome = Outcome.ABANDONED
        return []

    def _on_drain_ended(self, event: DrainEnded) -> list[Command]:
        commands: list[Command] = []
        if self._playing is not None:
            commands.append(StopPlayback(self._playing))
            self._playing = None
        commands += self._cancel_timer()
        if self.outcome is None:
            self.outcome = Outcome.SHUTDOWN
        return [*commands, *self._continue()]

    def _ignore(self, event: Event) -> list[Command]:
        return []

    def _continue(self) -> list[Command]:
        self.state = State.CONTINUED
        if self.callback_stored:
            return [ContinueInDialplan(self.settings.continue_stored_to)]
        return [ContinueInDialplan(self.settings.continue_to)]

    # --- helpers ------------------------------------------------------------

    def _next_id(self, kind: str) -> str:
        self._seq += 1
        assert self.channel is not None
        return f"{self._id_prefix}{self.channel.id}-{kind}{self._seq}"

    def _play(self, sound: str) -> list[Command]:
        assert self.channel is not None
        self._playing = self._next_id("p")
        self._started = False
        # The watchdogs are named after their playback: ids stay unique per call.
        self._timer = self._playing + "-start"
        start = self.settings.playback_start_timeout
        if self._behind_old_play:
            start, self._behind_old_play = self.settings.playback_timeout, False
        return [
            Play(self._playing, media_uri(sound), self.channel.language),
            StartTimer(self._timer, start),
        ]

    def _watch(self, timer_id: str) -> list[Command]:
        self._timer = timer_id
        return [StartTimer(timer_id, self.settings.playback_timeout)]

    def _playback_over(self) -> list[Command]:
        # The playback we waited on ended (or was stopped): call off its watchdog.
        self._playing = None
        return self._cancel_timer()

    def _start_timer(self, kind: str, seconds: float) -> list[Command]:
        self._timer = self._next_id(kind)
        return [StartTimer(self._timer, seconds)]

    def _cancel_timer(self) -> list[Command]:
        if self._timer is None:
            return []
        timer, self._timer = self._timer, None
        return [CancelTimer(timer)]


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


def _build_table() -> dict[tuple[State, type], _Handler]:
    table: dict[tuple[State, type], _Handler] = {
        (State.NEW, StasisStart): CallFlow._on_stasis_start,
        (State.NEW, CallRecovered): CallFlow._on_recovered,
        (State.NEW, DrainEnded): CallFlow._on_drain_before_start,
        (State.PAUSING, TimerFired): CallFlow._on_pause_over,
        (State.MENU, PlaybackFinished): CallFlow._on_menu_finished,
        (State.NOTICE, PlaybackFinished): CallFlow._on_notice_finished,
        (State.WAITING, ChannelDtmfReceived): CallFlow._on_key_while_waiting,
        (State.WAITING, TimerFired): CallFlow._on_digit_timeout,
        (State.STORING, CallbackStored): CallFlow._on_stored,
        (State.STORING, CallbackNotStored): CallFlow._on_not_stored,
        (State.STORING, TimerFired): CallFlow._on_store_timeout,
        (State.STORING, DrainEnded): CallFlow._on_drain_while_storing,
        (State.CONFIRMING, PlaybackFinished): CallFlow._on_confirmation_finished,
        (State.SORRY, PlaybackFinished): CallFlow._on_sorry_finished,
        (State.GOODBYE, PlaybackFinished): CallFlow._on_goodbye_finished,
    }
    for state in _PLAYING:
        table[(state, TimerFired)] = CallFlow._on_playback_stuck
        table[(state, PlaybackStarted)] = CallFlow._on_playback_started
    for state in _KEY_STOPS_PROMPT:
        table[(state, ChannelDtmfReceived)] = CallFlow._on_key_during_prompt
    # The caller can leave at any moment, even before the flow has started.
    for state in (State.NEW, *_LIVE):
        for gone in (ChannelHangupRequest, StasisEnd, ChannelGone):
            table[(state, gone)] = CallFlow._on_caller_gone
    for state in _LIVE:
        table.setdefault((state, DrainEnded), CallFlow._on_drain_ended)
        # Expected, nothing to do: playbacks report starting; keys outside
        # the menu (during the pause, as Wait() does, or after the choice) and
        # timers or playbacks that were replaced are dropped.
        for expected in _EXPECTED_ANYTIME:
            table.setdefault((state, expected), CallFlow._ignore)

    # An answer from the outbox after store_timeout, while sorry or goodbye plays.
    for state in (State.SORRY, State.GOODBYE):
        table[(state, CallbackStored)] = CallFlow._on_late_stored
        table[(state, CallbackNotStored)] = CallFlow._ignore
    # After the end only late news arrives: the flow has nothing more to say.
    for state in _FINAL:
        for late in _LATE_NEWS:
            table[(state, late)] = CallFlow._ignore
    return table


_TABLE = _build_table()
