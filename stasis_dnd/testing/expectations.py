"""What a conversation test can expect of the flow, and how a failed
expectation explains itself (`Conversation` in conversation.py has these)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from stasis_dnd.core import (
    Answer,
    CancelTimer,
    Command,
    ContinueInDialplan,
    Event,
    Hangup,
    Play,
    RequestCallback,
    StartTimer,
    StopPlayback,
)
from stasis_dnd.core.states import media_uri
from stasis_dnd.settings import IvrSettings

_C = TypeVar("_C")
# Timers and playback stops: an expectation steps over them unless it asks for one.
PLUMBING = (StartTimer, CancelTimer, StopPlayback)


class ConversationError(AssertionError):
    """The flow did not do what the test expected."""


class Expectations:
    """The `expect_*` methods: each consumes the flow's next commands."""

    settings: IvrSettings
    transcript: list[str]
    _unchecked: deque[Command]
    _schedule: list[tuple[float, int, Event]]
    # The simulated clock, in Conversation.
    _advance_to: Callable[[float], None]

    def expect_answer(self) -> None:
        self._expect(Answer, "answer the channel")

    def expect_play(self, sound: str) -> Play:
        """The next thing the caller hears is `sound` (a name or media URI)."""
        uri = media_uri(sound)
        command = self._expect(Play, f"play {uri}")
        if command.media != uri:
            self._fail(f"play {uri}", f"played {command.media}")
        return command

    def expect_prompt(self) -> Play:
        return self.expect_play(self.settings.prompt)

    def expect_invalid_notice(self) -> Play:
        return self.expect_play(self.settings.invalid_prompt)

    def expect_sorry(self) -> Play:
        return self.expect_play(self.settings.sorry)

    def expect_confirmation(self) -> Play:
        return self.expect_play(self.settings.confirmation)

    def expect_already_requested(self) -> Play:
        return self.expect_play(self.settings.already_requested)

    def expect_closed(self) -> Play:
        """The caller is told the office is closed (`outside_hours = announce`)."""
        return self.expect_play(self.settings.closed_prompt)

    def expect_next_day_confirmation(self) -> Play:
        """The request is stored outside hours: "we will call you back on the next working day"."""
        return self.expect_play(self.settings.next_day_confirmation)

    def expect_readback(self, number: str, *, after: str = "") -> Play:
        """The caller hears `number` read back, digit by digit, between the
        read-back prompt and its menu (after the sound `after`, if given)."""
        digits = [f"digits/{digit}" for digit in number.lstrip("+")]
        parts = (after, self.settings.readback_prompt, *digits, self.settings.readback_menu)
        return self._expect_sounds(*parts)

    def expect_entry_prompt(self, *, after: str = "") -> Play:
        """The caller is asked to key in a number (after the sound `after`, if given)."""
        return self._expect_sounds(after, self.settings.entry_prompt)

    def expect_no_number(self) -> Play:
        """The caller is told their number cannot be seen and asked for one."""
        return self.expect_entry_prompt(after=self.settings.no_number_prompt)

    def expect_number_invalid(self) -> Play:
        """The number keyed in is not valid: the caller is asked again."""
        return self.expect_entry_prompt(after=self.settings.entry_invalid)

    def expect_goodbye(self) -> Play:
        return self.expect_play(self.settings.goodbye)

    def expect_stop(self) -> StopPlayback:
        """The playing sound is cut short (a key was pressed, or shutdown)."""
        return self._expect(StopPlayback, "stop the playing sound")

    def expect_callback(self, phone: str, *, caller_id: str | None = None) -> None:
        """The flow asks for a callback request for exactly `phone` (and, if
        given, with exactly `caller_id` as the caller's own number)."""
        command = self._expect(RequestCallback, f"request a callback for {phone}")
        if command.phone != phone:
            self._fail(f"request a callback for {phone}", f"requested one for {command.phone}")
        if caller_id is not None and command.caller_id != caller_id:
            wanted = f"send caller id {caller_id!r} with the request"
            self._fail(wanted, f"sent {command.caller_id!r}")

    def expect_hangup(self) -> None:
        self._expect(Hangup, "hang up")

    def expect_continue(self, target: str | None = None) -> None:
        """The call is sent back to the dialplan (its fallback serves it);
        `target` ("context,extension,priority") checks where, if given."""
        command = self._expect(ContinueInDialplan, "continue in the dialplan")
        where = str(command.target) if command.target else "after Stasis()"
        if target is not None and where != target:
            self._fail(f"continue in the dialplan at {target}", f"continued at {where}")

    def expect_nothing_more(self) -> None:
        """Whatever time passes, the flow does nothing the caller would notice."""
        self._advance_to(float("inf"))
        rest = [c for c in self._unchecked if not isinstance(c, PLUMBING)]
        if rest:
            self._fail("nothing more", "did " + ", ".join(map(describe, rest)))
        self._unchecked.clear()

    def _expect_sounds(self, *sounds: str) -> Play:
        uri = ",".join(media_uri(sound) for sound in sounds if sound)
        command = self._expect(Play, f"play {uri}")
        if command.media != uri:
            self._fail(f"play {uri}", f"played {command.media}")
        return command

    def _expect(self, kind: type[_C], wanted: str) -> _C:
        while True:
            while not self._unchecked and self._schedule:
                self._advance_to(self._schedule[0][0])
            if not self._unchecked:
                self._fail(wanted, "did nothing more")
            command = self._unchecked.popleft()
            if isinstance(command, kind):
                return command
            if not isinstance(command, PLUMBING):
                self._fail(wanted, "did: " + describe(command))

    def _fail(self, wanted: str, got: str) -> Any:
        lines = "\n".join("  " + line for line in self.transcript)
        raise ConversationError(
            f"expected the flow to {wanted}, but it {got}\nconversation so far:\n{lines}"
        )


def describe(command: Command) -> str:
    if isinstance(command, Play):
        return f"play {command.media} ({command.language})"
    if isinstance(command, StopPlayback):
        return "stop the playing sound"
    if isinstance(command, StartTimer):
        return f"start a {command.seconds:g} s timer"
    if isinstance(command, CancelTimer):
        return "cancel the timer"
    if isinstance(command, RequestCallback):
        own = f" (caller id {command.caller_id})" if command.caller_id else ""
        return f"request a callback for {command.phone}{own}"
    if isinstance(command, Hangup):
        return "hang up"
    if isinstance(command, ContinueInDialplan):
        where = f" at {command.target}" if command.target else ""
        return f"continue in the dialplan{where}"
    return "answer the channel"
