"""What the fake records about each call, for tests to assert on.

A `FakeCall` is written only by the fake's event loop and read from any
thread: lists only grow, and readers get copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Final dispositions of a call (`FakeCall.disposition`).
STILL_IN_APP = "still_in_app"
HUNGUP_BY_APP = "hungup_by_app"
CONTINUED = "continued"
CALLER_HUNG_UP = "caller_hung_up"
# Stasis() found no WebSocket for the app: STASISSTATUS=FAILED in the dialplan.
STASIS_FAILED = "stasis_failed"


@dataclass(frozen=True)
class RestRequest:
    """One ARI request the app made about this call."""

    at: float  # time.monotonic() when it arrived
    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass(frozen=True)
class SentEvent:
    """One event about this call; `delivered` is False when no app socket took it."""

    at: float
    type: str
    delivered: bool


@dataclass
class Heard:
    """One prompt as the caller heard it.

    outcome: "" while playing, "done" (played to the end), "stopped" (the app
    stopped it), "failed" (its last part does not exist), "hangup" (the call
    ended during it). `parts`: the media URIs of the play that started, in
    order (a play of "a,b,c" stopped during b heard ["a", "b"]).
    """

    playback_id: str
    media: str
    started: float
    ended: float | None = None
    outcome: str = ""
    parts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Latency:
    """How long the app took to act on an event: e.g. DTMF -> stop playback."""

    channel_id: str
    event: str  # StasisStart, ChannelDtmfReceived, PlaybackFinished
    command: str  # answer, play, stop_playback, continue, hangup
    seconds: float


@dataclass
class FakeCall:
    """One caller: what they did, what the app did to them, how it ended."""

    id: str
    number: str
    name: str
    language: str
    args: tuple[str, ...]
    placed: float = field(default_factory=time.monotonic)
    disposition: str = STILL_IN_APP
    requests: list[RestRequest] = field(default_factory=list)
    events: list[SentEvent] = field(default_factory=list)
    heard: list[Heard] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)  # pressed while in the app
    answered: bool = False
    ended: float | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    # Set by the fake: runs a caller action ("dtmf", digit) / ("hangup",) on its loop.
    _act: Callable[[tuple[object, ...]], None] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        """True once the call has left the app (or never entered it)."""
        return self._done.is_set()

    def wait_done(self, timeout: float = 10.0) -> str:
        """Wait until the call leaves the app; returns the disposition."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"call {self.id} still in the app after {timeout} s")
        return self.disposition

    def press(self, digit: str, duration_ms: int = 100) -> None:
        """The caller presses a key now (thread-safe)."""
        self._send(("dtmf", digit, duration_ms))

    def hang_up(self) -> None:
        """The caller hangs up now (thread-safe)."""
        self._send(("hangup",))

    def event_types(self) -> list[str]:
        """Types of the events sent to the app about this call, in order."""
        return [e.type for e in list(self.events)]

    def media_heard(self) -> list[str]:
        """The media of each play the caller heard start, in order (several
        media of one play joined by commas, as the app asked)."""
        return [h.media for h in list(self.heard)]

    def parts_heard(self) -> list[str]:
        """Every media URI the caller heard start, one by one, in order: the
        parts of a play of several media are separate entries
        (["sound:custom/IVR_DND_READBACK", "digits:79001234567", ...])."""
        return [part for h in list(self.heard) for part in list(h.parts)]

    def commands(self) -> list[str]:
        """The app's requests as "METHOD path", in order."""
        return [f"{r.method} {r.path}" for r in list(self.requests)]

    def summary(self) -> dict[str, object]:
        """A JSON-ready view of this record."""
        return {
            "id": self.id,
            "number": self.number,
            "disposition": self.disposition,
            "answered": self.answered,
            "digits": list(self.digits),
            "events": self.event_types(),
            "requests": self.commands(),
            "heard": [
                {
                    "media": h.media,
                    "parts": list(h.parts),
                    "outcome": h.outcome,
                    "seconds": _span(h.started, h.ended),
                }
                for h in list(self.heard)
            ],
            "seconds": _span(self.placed, self.ended),
        }

    def _send(self, step: tuple[object, ...]) -> None:
        if self._act is None:
            raise RuntimeError("this call is not attached to a running fake Asterisk")
        self._act(step)

    def _finish(self, disposition: str) -> None:
        self.disposition = disposition
        self.ended = time.monotonic()
        self._done.set()


def _span(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 3)
