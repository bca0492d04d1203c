"""Test an IVR flow like a conversation: no Asterisk, no sleeping.

A `Conversation` drives one `CallFlow` and plays Asterisk's part the way
Asterisk 22 does it: playbacks report starting and end after their length (or
fail at once for a missing sound, or never start nor end for a stuck one), a
stopped playback ends as "done", hang-up events come in Asterisk's order.
Time is a fake clock that moves only when the test waits, or when an
expectation needs the next thing to happen.

    call = Conversation(number="+7 900 123-45-67")
    call.expect_prompt()
    call.press("1")
    call.expect_readback("+79001234567")
    call.press("2")                      # another number
    call.expect_entry_prompt()
    call.press("4951234567#")
    call.expect_readback("4951234567")
    call.press("1")
    call.expect_callback("4951234567", caller_id="+79001234567")
    call.expect_confirmation()
    call.expect_goodbye()
    call.expect_hangup()

A play of several sounds (the read-back: prompt, number, menu) is one
playback, as on Asterisk: it lasts as long as its parts together, and a key
stops all of it.

Expectations consume the flow's commands in order. Timers and playback stops
are plumbing: an expectation steps over them unless it asks for one itself.
A failed expectation raises `ConversationError` with what was expected, what
the flow did, and the transcript so far.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal

from stasis_dnd.core import (
    CallbackNotStored,
    CallbackStored,
    CallFlow,
    CallRecovered,
    CancelTimer,
    Channel,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Command,
    ContinueInDialplan,
    DrainEnded,
    Event,
    Hangup,
    Play,
    PlaybackFinished,
    PlaybackStarted,
    RequestCallback,
    StartTimer,
    StasisEnd,
    StasisStart,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.core.context import parse_stasis_args
from stasis_dnd.core.states import media_uri
from stasis_dnd.profiles import Profiles
from stasis_dnd.settings import IvrSettings, Settings
from stasis_dnd.testing.expectations import Expectations, describe

CallbackMode = Literal["stored", "not_stored", "already_requested", "manual"]

# How long a sound plays when the test does not say; shorter than the digit
# timeout so "wait for the prompt to end" and "time out" stay distinct.
DEFAULT_SOUND_SECONDS = 2.0
# How long Asterisk takes to say one digit (sound digits/N).
DIGIT_SECONDS = 0.5


class Conversation(Expectations):
    """One simulated call through a `CallFlow`.

    `callbacks` says what the outbox answers to a callback request: "stored"
    (default), "not_stored", "already_requested" (the number has a request
    within the dedupe window), or "manual" (the test calls `callback_stored()`
    or `callback_not_stored()` itself). `missing_sounds` fail to play, as a
    sound file absent on the Asterisk would. `stuck_sounds` are accepted but
    never start nor end, as on an Asterisk 22 just after a freeze: the flow's
    start watchdog (`playback_start_timeout`) gets the call going again.
    `endless_sounds` start and never end: only `playback_timeout` helps.
    `sound_seconds` gives lengths of particular sounds (by name, e.g.
    "vm-goodbye"). `open=False` starts the call outside business hours.
    `Conversation.configured(settings, args=...)` is a call under a whole
    configuration: served by the profile its Stasis() arguments choose.
    """

    @classmethod
    def configured(
        cls, settings: Settings, *, args: Iterable[str] = ("TIMEOUT",), **options: Any
    ) -> Conversation:
        """A call as the app serves it under `settings` (e.g. `load_settings(path)`):
        with the profile that `args` (`profile=NAME`, `queue=NAME`) choose."""
        args = tuple(args)
        context, _ = parse_stasis_args(args)
        profile = Profiles(settings).choose(named=context.profile, queue=context.queue).profile
        flow = CallFlow(profile.ivr, profile=profile.name)
        return cls(profile.ivr, args=args, flow=flow, **options)

    def __init__(
        self,
        settings: IvrSettings | None = None,
        *,
        number: str = "+79001234567",
        name: str = "",
        state: str = "Up",
        language: str = "en",
        args: Iterable[str] = ("TIMEOUT",),
        channel_id: str = "1700000000.1",
        callbacks: CallbackMode = "stored",
        missing_sounds: Iterable[str] = (),
        stuck_sounds: Iterable[str] = (),
        endless_sounds: Iterable[str] = (),
        sound_seconds: dict[str, float] | None = None,
        recovered: bool = False,
        callback_already_stored: bool = False,
        open: bool = True,
        flow: CallFlow | None = None,
    ) -> None:
        self.settings = settings or IvrSettings()
        self.flow = flow or CallFlow(self.settings)
        self.channel = Channel(channel_id, state, name, number, language)
        self.callbacks: CallbackMode = callbacks
        self.now = 0.0
        self.transcript: list[str] = []
        self.heard: list[str] = []  # media URIs the caller heard start, part by part
        self.callback_requests: list[str] = []  # phones the flow asked to store
        self.caller_ids: list[str] = []  # and the caller id sent with each
        self.commands: list[Command] = []  # every command, in order
        self._missing = {media_uri(s) for s in missing_sounds}
        self._stuck = {media_uri(s) for s in stuck_sounds}
        self._endless = {media_uri(s) for s in endless_sounds}
        self._seconds = {media_uri(k): v for k, v in (sound_seconds or {}).items()}
        self._unchecked: deque[Command] = deque()
        self._inbox: deque[Event] = deque()
        # (due time, order, event) for timers and playbacks that will end.
        self._schedule: list[tuple[float, int, Event]] = []
        self._order = itertools.count()
        self._timers: dict[str, tuple[float, int, Event]] = {}
        self._playing: tuple[str, tuple[float, int, Event]] | None = None
        self._over = False
        if recovered:
            self._say("app", "recovers the parked call")
            self._feed(CallRecovered(self.channel, callback_already_stored, open))
        else:
            who = f"{name} <{number}>" if name else number or "(no caller id)"
            hours = "" if open else ", outside business hours"
            self._say("caller", f"arrives from {who}, channel {state}, args {list(args)}{hours}")
            self._feed(StasisStart(self.channel, tuple(args), open))

    # --- what the caller and the world do -----------------------------------

    def press(self, digits: str) -> None:
        """The caller presses each key in `digits`, now."""
        for digit in digits:
            self._say("caller", f"presses {digit}")
            self._feed(ChannelDtmfReceived(digit))

    def wait(self, seconds: float) -> None:
        """Let `seconds` pass: timers fire and playbacks end on the way."""
        self._advance_to(self.now + seconds)

    def hang_up(self) -> None:
        """The caller hangs up; events follow in Asterisk's order."""
        self._say("caller", "hangs up")
        self._inbox.append(ChannelHangupRequest())
        if self._playing is not None:
            # Asterisk 22 ends a playback cut by a hang-up as "failed".
            self._inbox.append(PlaybackFinished(self._playing[0], "failed"))
            self._playing = None
        self._inbox.append(StasisEnd())
        self._run()

    def callback_stored(self, *, already_requested: bool = False) -> None:
        """The outbox reports the request stored (with `callbacks="manual"`)."""
        self._say(
            "outbox", "found a request already" if already_requested else "stored the request"
        )
        self._feed(CallbackStored(already_requested))

    def callback_not_stored(self, reason: str = "disk full") -> None:
        """The outbox reports it could not store the request."""
        self._say("outbox", f"could not store the request: {reason}")
        self._feed(CallbackNotStored(reason))

    def drain_ends(self) -> None:
        """The app is shutting down and this call's drain period is over."""
        self._say("app", "shutdown: drain period over")
        self._feed(DrainEnded())

    def send(self, event: Event) -> None:
        """Feed any event as it is, for cases the helpers above do not cover."""
        self._say("event", repr(event))
        self._feed(event)

    # --- the simulated Asterisk ---------------------------------------------

    def _feed(self, event: Event) -> None:
        self._inbox.append(event)
        self._run()

    def _run(self) -> None:
        while self._inbox:
            event = self._inbox.popleft()
            for command in self.flow.handle(event):
                self.commands.append(command)
                self._unchecked.append(command)
                self._say("app", describe(command))
                self._carry_out(command)
            if self.flow.anomaly:
                self._say("flow", self.flow.anomaly)
            if self.flow.warning:
                self._say("flow", "warns: " + self.flow.warning)
            if self.flow.ending is not None and not self._over:
                # As the shell does: a finished call's timers are dropped.
                self._over = True
                self._schedule.clear()
                self._timers.clear()

    def _carry_out(self, command: Command) -> None:
        if isinstance(command, Play):
            self._start_playback(command)
        elif isinstance(command, StopPlayback):
            if self._playing is not None and self._playing[0] == command.playback_id:
                self._unschedule(self._playing[1])
                self._playing = None
                self._inbox.append(PlaybackFinished(command.playback_id, "done"))
        elif isinstance(command, StartTimer):
            self._timers[command.timer_id] = self._at(command.seconds, TimerFired(command.timer_id))
        elif isinstance(command, CancelTimer):
            if command.timer_id in self._timers:
                self._unschedule(self._timers.pop(command.timer_id))
        elif isinstance(command, RequestCallback):
            self.callback_requests.append(command.phone)
            self.caller_ids.append(command.caller_id)
            if self.callbacks == "stored":
                self._say("outbox", f"stored a callback request for {command.phone}")
                self._inbox.append(CallbackStored())
            elif self.callbacks == "already_requested":
                self._say("outbox", f"{command.phone} has a request already")
                self._inbox.append(CallbackStored(already_requested=True))
            elif self.callbacks == "not_stored":
                self._say("outbox", "could not store the request")
                self._inbox.append(CallbackNotStored("the outbox refused it"))
        elif isinstance(command, Hangup | ContinueInDialplan):
            self._inbox.append(StasisEnd())
        else:
            self.channel = replace(self.channel, state="Up")

    def _start_playback(self, command: Play) -> None:
        # As Asterisk 22 does with several media: each part in turn, a missing
        # one skipped; a missing last part ends the playback "failed".
        parts = command.media.split(",")
        if parts[0] in self._stuck:
            self._say("asterisk", f"accepts {command.media} but never plays it")
            return
        self._inbox.append(PlaybackStarted(command.playback_id))
        found = [part for part in parts if part not in self._missing]
        self.heard += found
        for part in parts:
            if part in self._missing:
                self._say("asterisk", f"cannot find {part}")
        if any(part in self._endless for part in found):
            self._say("asterisk", f"starts {command.media} and never ends it")
            self._playing = (command.playback_id, (float("inf"), -1, StasisEnd()))
            return
        if not found:
            self._inbox.append(PlaybackFinished(command.playback_id, "failed"))
            return
        state = "failed" if parts[-1] in self._missing else "done"
        seconds = sum(self._part_seconds(part) for part in found)
        entry = self._at(seconds, PlaybackFinished(command.playback_id, state))
        self._playing = (command.playback_id, entry)

    def _part_seconds(self, part: str) -> float:
        if part.startswith("sound:digits/") and part not in self._seconds:
            return DIGIT_SECONDS
        return self._seconds.get(part, DEFAULT_SOUND_SECONDS)

    def _at(self, seconds: float, event: Event) -> tuple[float, int, Event]:
        entry = (self.now + seconds, next(self._order), event)
        heapq.heappush(self._schedule, entry)
        return entry

    def _unschedule(self, entry: tuple[float, int, Event]) -> None:
        if entry in self._schedule:
            self._schedule.remove(entry)
            heapq.heapify(self._schedule)

    def _advance_to(self, until: float) -> None:
        while self._schedule and self._schedule[0][0] <= until:
            due, _, event = heapq.heappop(self._schedule)
            self.now = max(self.now, due)
            if isinstance(event, PlaybackFinished):
                self._playing = None
                self._say("asterisk", "playback finished")
            else:
                self._say("clock", "timer fired")
            self._feed(event)
        if until != float("inf"):
            self.now = until

    def _say(self, who: str, what: str) -> None:
        self.transcript.append(f"{self.now:6.2f}s  {who:<8} {what}")
