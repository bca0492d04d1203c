"""The steps about the number to call: reading it back for the caller to
confirm, and keying in another one (rules 10 to 12 of `stasis_dnd.core`).

Each step is a state with one timer: READBACK (playing, a key stops it),
CONFIRM_WAIT (`digit_timeout`), ENTRY_PROMPT (playing, a key stops it and
counts as typed) and ENTERING (`entry_digit_timeout` between digits).
"""

from __future__ import annotations

from stasis_dnd.core.base import FlowBase
from stasis_dnd.core.callerid import callback_number
from stasis_dnd.core.commands import Command, StopPlayback
from stasis_dnd.core.events import ChannelDtmfReceived, PlaybackFinished, TimerFired
from stasis_dnd.core.states import Outcome, State

_CONFIRM_TIMER = "confirm"
_ENTRY_TIMER = "entry"
_TYPED = frozenset("0123456789")


class NumberSteps(FlowBase):
    """Read-back and number entry, between the accepted key and storing."""

    def _accepted(self) -> list[Command]:
        """The caller asked for a callback: make sure of the number first."""
        if not self.phone:
            return self._begin_entry(self.settings.no_number_prompt)
        return self._number_chosen()

    def _number_chosen(self) -> list[Command]:
        if self.settings.readback:
            return self._read_back()
        return self._request_callback()

    # --- read-back ------------------------------------------------------------

    def _read_back(self, notice: str = "") -> list[Command]:
        self.state = State.READBACK
        # One sound per digit, not a `digits:` media: Asterisk 22 cannot stop
        # a playback while it says a `digits:` part, and a key must stop it.
        number = self.phone.lstrip("+")  # pragma: no mutate: digits after a "+": no "X" to strip
        digits = [f"digits/{digit}" for digit in number]
        return self._play(
            notice, self.settings.readback_prompt, *digits, self.settings.readback_menu
        )

    def _on_readback_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []
        done = self._playback_over()
        if event.state == "failed":
            # The caller pressed the key for a callback: a missing sound must not lose it.
            return done + self._request_callback()
        self.state = State.CONFIRM_WAIT
        return done + self._start_timer(_CONFIRM_TIMER, self.settings.digit_timeout)

    def _on_key_during_readback(self, event: ChannelDtmfReceived) -> list[Command]:
        assert self._playing is not None  # READBACK always has its playback
        stop: list[Command] = [StopPlayback(self._playing)]
        return stop + self._playback_over() + self._confirm_key(event.digit)

    def _on_key_while_confirming(self, event: ChannelDtmfReceived) -> list[Command]:
        return self._cancel_timer() + self._confirm_key(event.digit)

    def _on_confirm_timeout(self, event: TimerFired) -> list[Command]:
        if not self._is_current(event.timer_id):
            return []
        if self.settings.silence_confirms:
            return self._request_callback()
        return self._not_confirmed()

    def _confirm_key(self, digit: str) -> list[Command]:
        if digit == self.settings.confirm_digit:
            return self._request_callback()
        if digit == self.settings.change_digit:
            return self._begin_entry()
        return self._not_confirmed()

    def _not_confirmed(self) -> list[Command]:
        self._confirm_failures += 1
        if self._confirm_failures < self.settings.confirm_attempts:
            return self._read_back(self.settings.invalid_prompt)
        self.outcome = Outcome.NOT_CONFIRMED
        return self._sorry()

    # --- keying in a number ---------------------------------------------------

    def _begin_entry(self, notice: str = "") -> list[Command]:
        """A new number is asked for; each one counts against `entry_attempts`."""
        if self._entries >= self.settings.entry_attempts:
            self.outcome = Outcome.INVALID_NUMBER
            return self._sorry()
        self._entries += 1
        return self._ask_for_number(notice)

    def _ask_for_number(self, notice: str = "") -> list[Command]:
        self._typed = ""
        self.state = State.ENTRY_PROMPT
        return self._play(notice, self.settings.entry_prompt)

    def _on_entry_prompt_finished(self, event: PlaybackFinished) -> list[Command]:
        if event.playback_id != self._playing:
            return []
        # A prompt that failed still leaves the caller able to key in the number.
        return self._playback_over() + self._await_digit()

    def _await_digit(self) -> list[Command]:
        self.state = State.ENTERING
        return self._start_timer(
            _ENTRY_TIMER,  # pragma: no mutate: the kind only names the id, unique by its number
            self.settings.entry_digit_timeout,
        )

    def _on_key_during_entry_prompt(self, event: ChannelDtmfReceived) -> list[Command]:
        assert self._playing is not None  # ENTRY_PROMPT always has its playback
        stop: list[Command] = [StopPlayback(self._playing)]
        return stop + self._playback_over() + self._entry_key(event.digit)

    def _on_key_while_entering(self, event: ChannelDtmfReceived) -> list[Command]:
        return self._cancel_timer() + self._entry_key(event.digit)

    def _on_entry_timeout(self, event: TimerFired) -> list[Command]:
        if not self._is_current(event.timer_id):
            return []
        return self._entered()

    def _entry_key(self, digit: str) -> list[Command]:
        if digit == "#":
            return self._entered()
        if digit == "*":
            return self._ask_for_number()  # starts over: not another attempt
        if digit in _TYPED:
            self._typed += digit
            if len(self._typed) >= self.settings.entry_max_digits:
                return self._entered()
        # Keys that are not part of a number (A-D) are ignored.
        return self._await_digit()

    def _entered(self) -> list[Command]:
        if not self._typed:
            return self._begin_entry()  # silence, or # alone: ask again
        number = callback_number(
            self._typed, self.settings.number_pattern, self.settings.number_rewrite
        )
        if not number:
            return self._begin_entry(self.settings.entry_invalid)
        self.phone = number
        return self._number_chosen()
