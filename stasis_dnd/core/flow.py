"""The call flow: one pure state machine per caller.

Theory of operation
-------------------
The shell feeds every ARI event of one channel, and every outcome of its own
I/O, into `CallFlow.handle()`, which returns the commands to carry out, in
order. The flow never waits: time passes only as `TimerFired` events for the
timers it asked for, and I/O results come back as events.

The rules it follows are in the package's docstring (`stasis_dnd.core`);
the transitions are a table keyed by (state, event type), in `table.py`. An
event that fits no entry is an anomaly: it is ignored, and described in
`CallFlow.anomaly` for the shell to log; the flow never raises. Trouble the
operator must hear of, such as a stuck playback, is described in
`CallFlow.warning` instead.

Every live state has exactly one timer running, in `_timer`: the pause, the
digit timeout, the bound on storing, or the watchdog of the playback under
way (until it starts, then until it ends).
"""

from __future__ import annotations

from functools import cached_property

from stasis_dnd.core.callerid import callback_number, phone_of
from stasis_dnd.core.commands import (
    Answer,
    Command,
    ContinueInDialplan,
    Hangup,
    RequestCallback,
    StopPlayback,
)
from stasis_dnd.core.context import parse_stasis_args
from stasis_dnd.core.events import (
    CallbackNotStored,
    CallbackStored,
    CallRecovered,
    Channel,
    ChannelDtmfReceived,
    DrainEnded,
    Event,
    PlaybackFinished,
    PlaybackStarted,
    StasisStart,
    TimerFired,
)
from stasis_dnd.core.number_steps import NumberSteps
from stasis_dnd.core.states import Outcome, State
from stasis_dnd.core.table import Handler, build_table
from stasis_dnd.settings import DialplanTarget

_PAUSE_TIMER = "pause"
_DIGIT_TIMER = "digit"
_STORE_TIMER = "store"


class CallFlow(NumberSteps):
    """The IVR for one call. Feed it events; carry out the commands it returns."""

    @cached_property
    def _table(self) -> dict[tuple[State, type], Handler]:
        # Built per flow, not once at import, so that mutation testing reaches build_table.
        return build_table(CallFlow)

    def handle(self, event: Event) -> list[Command]:
        """Advance the flow by one event and return the commands to carry out."""
        self.anomaly = None
        self.warning = None
        handler = self._table.get((self.state, type(event)))
        if handler is None:
            self.anomaly = f"can't handle {type(event).__name__} in state {self.state.value}"
            return []
        return handler(self, event)

    # --- starting -----------------------------------------------------------

    def _on_stasis_start(self, event: StasisStart) -> list[Command]:
        context, key = parse_stasis_args(event.args)
        self.context = (*context.facts(event.channel), ("profile", self.profile))
        self.unknown_args = context.unknown
        breakout = key is not None and key == self.settings.accept_digit
        self._open = event.open
        return self._start(
            event.channel,
            breakout=breakout,
            stored=False,  # pragma: no mutate: None is as false
        )

    def _on_recovered(self, event: CallRecovered) -> list[Command]:
        # The facts again; a key pressed in the queue is not taken a second time.
        context, _ = parse_stasis_args(event.args)
        self.context = (*context.facts(event.channel), ("profile", self.profile))
        self._behind_old_play = True
        self._open = event.open
        return self._start(
            event.channel,
            breakout=False,  # pragma: no mutate: None is as false
            stored=event.callback_stored,
        )

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
        if not self._open and not stored and self.settings.outside_hours != "offer":
            self.outcome = Outcome.CLOSED
            if self.settings.outside_hours == "continue":
                return self._continue()  # unanswered: the dialplan's out-of-hours path decides
        own = phone_of(channel.caller_number, channel.caller_name, self.settings.callerid_source)
        rules = self.settings.number_pattern, self.settings.number_rewrite
        self.phone = self.caller_number = callback_number(own, *rules)
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
        if self.outcome is Outcome.CLOSED:  # outside hours, to be announced
            self.state = State.CLOSED
            return self._play(self.settings.closed_prompt)
        if not self.phone and not self.settings.hidden_number_entry:
            self.outcome = Outcome.NO_CALLERID
            return self._sorry()
        if self._breakout:
            return self._accepted()
        return self._play_menu()

    def _on_pause_over(self, event: TimerFired) -> list[Command]:
        if not self._is_current(event.timer_id):
            return []  # a timer cancelled or replaced before it fired
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
        if not self._is_current(event.timer_id):
            return []  # a timer cancelled or replaced before it fired
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
        failed = self._table[(self.state, PlaybackFinished)](
            self, PlaybackFinished(stuck, "failed")
        )
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
        if not self._is_current(event.timer_id):
            return []
        return self._no_choice(Outcome.TIMEOUT)

    def _choose(self, digit: str) -> list[Command]:
        if digit == self.settings.accept_digit:
            return self._accepted()
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
        caller_id = self.caller_number if self.caller_number != self.phone else ""
        return [RequestCallback(self.phone, caller_id, self.context), *timer]

    def _on_stored(self, event: CallbackStored) -> list[Command]:
        self.callback_stored = True
        done = self._cancel_timer()
        if self._closing:
            return done + self._continue()
        words = self.settings.confirmation
        if not self._open:  # outside hours, offered all the same: not "soon"
            words = self.settings.next_day_confirmation or words
        if event.already_requested:
            self.outcome = Outcome.ALREADY_REQUESTED
            words = self.settings.already_requested or words
        if words:
            self.state = State.CONFIRMING
            return done + self._play(words)
        return done + self._goodbye()

    def _on_not_stored(self, event: CallbackNotStored) -> list[Command]:
        return self._cancel_timer() + self._not_stored()

    def _on_store_timeout(self, event: TimerFired) -> list[Command]:
        if not self._is_current(event.timer_id):
            return []
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
        # Stored after store_timeout (the caller heard sorry): no menu on a hand-back.
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

    def continue_target(self) -> DialplanTarget | None:
        """Where a hand-back to the dialplan sends this call now: goodbye only
        once its request is stored or being stored, the out-of-hours target
        once it was found closed, else the dialplan's menu."""
        if self.callback_stored or self.state is State.STORING:
            return self.settings.continue_stored_to
        if self.outcome is Outcome.CLOSED:
            return self.settings.closed_continue_to
        return self.settings.continue_to

    def _continue(self) -> list[Command]:
        self.state = State.CONTINUED
        return [ContinueInDialplan(self.continue_target())]
