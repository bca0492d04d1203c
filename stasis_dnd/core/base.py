"""What every step of the call flow shares: the flow's state, its one
running timer, the playback it waits on, and the ids it hands out.

`CallFlow` (flow.py) is built on this, through `NumberSteps` (number_steps.py);
nothing here decides what the caller hears next.
"""

from __future__ import annotations

from collections.abc import Callable

from stasis_dnd.core.commands import CancelTimer, Command, Play, StartTimer
from stasis_dnd.core.events import Channel
from stasis_dnd.core.states import FINAL, Ending, Outcome, State, media_uri
from stasis_dnd.settings import DEFAULT_PROFILE, IvrSettings


class FlowBase:
    """The bookkeeping of one call's flow."""

    def __init__(
        self,
        settings: IvrSettings | None = None,
        *,
        id_prefix: str = "",
        profile: str = DEFAULT_PROFILE,
    ) -> None:
        self.settings = settings or IvrSettings()
        # The profile whose settings these are: a fact about the call for the CRM.
        self.profile = profile
        # Playback and timer ids start with this, so a flow restarted for the
        # same channel (recovery) never reuses an id of its predecessor.
        self._id_prefix = id_prefix
        self.state = State.NEW
        self.channel: Channel | None = None  # pragma: no mutate: _start sets it before any use
        # The number to call back: the caller id, or the number keyed in.
        self.phone = ""  # pragma: no mutate: _start sets it before any use
        # The caller's own number when it passed the number rules; else "".
        self.caller_number = ""  # pragma: no mutate: _start sets it before any use
        self.outcome: Outcome | None = None
        self.callback_requested = False
        # True once the shell said the request is stored (or found it stored).
        self.callback_stored = False  # pragma: no mutate: None is as false
        # Set by `handle()` when the event did not fit the state; else None.
        self.anomaly: str | None = None  # pragma: no mutate: handle() sets it before it is read
        # Set by `handle()` for trouble the operator should see; else None.
        self.warning: str | None = None  # pragma: no mutate: handle() sets it before it is read
        # The key was pressed in the queue (Stasis args).
        self._breakout = False  # pragma: no mutate: _start sets it before it is read
        # Facts about the call for the CRM (core.context), set when it starts.
        self.context: tuple[tuple[str, str], ...] = ()  # pragma: no mutate: set at the start
        # `key=value` Stasis() arguments the app does not know, for the shell to log.
        self.unknown_args: tuple[str, ...] = ()  # pragma: no mutate: read as a truth value
        self._closing = False  # pragma: no mutate: None is as false; shutting down (DrainEnded)
        # Within business hours, as the start event said.
        self._open = True  # pragma: no mutate: both start events set it before _start reads it
        self._failures = 0  # menus answered with a wrong key or silence
        self._seq = 0
        self._playing: str | None = None
        # Asterisk reported the playback in `_playing` started.
        self._started = False  # pragma: no mutate: _play sets it before it is read
        # Recovered: the next play may queue behind an old one.
        self._behind_old_play = False  # pragma: no mutate: None is as false
        self._timer: str | None = None  # pragma: no mutate: a timer is set before one is cancelled
        self._confirm_failures = 0  # read-backs answered with a wrong key (or silence)
        self._entries = 0  # numbers the caller began to key in
        self._typed = ""  # pragma: no mutate: _ask_for_number sets it before it is read

    @property
    def playing(self) -> str | None:
        """The id of the playback the flow is waiting on, if any."""
        return self._playing

    @property
    def ending(self) -> Ending | None:
        """How the call ended, or None while it is still in the flow."""
        return FINAL.get(self.state)

    def _next_id(self, kind: str) -> str:
        self._seq += 1
        assert self.channel is not None
        return f"{self._id_prefix}{self.channel.id}-{kind}{self._seq}"

    def _play(self, *sounds: str) -> list[Command]:
        """Play the sounds one after the other, as one playback (empty names skipped)."""
        assert self.channel is not None
        self._playing = self._next_id("p")
        self._started = False  # pragma: no mutate: None is as false
        # The watchdogs are named after their playback: ids stay unique per call.
        self._timer = self._playing + "-start"
        start = self.settings.playback_start_timeout
        if self._behind_old_play:
            start, self._behind_old_play = self.settings.playback_timeout, False
        media = ",".join(media_uri(sound) for sound in sounds if sound)
        return [
            Play(self._playing, media, self.channel.language),
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

    def _is_current(self, timer_id: str) -> bool:
        """Whether `timer_id` is the running timer (else it was cancelled or
        replaced before it fired); the running timer is then done."""
        if timer_id != self._timer:
            return False
        self._timer = None
        return True

    # Provided by CallFlow: where the steps hand the call back to it.
    _request_callback: Callable[[], list[Command]]
    _sorry: Callable[[], list[Command]]
