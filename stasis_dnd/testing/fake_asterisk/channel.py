"""A channel in the fake as the PBX keeps it, its playbacks, and the app's
socket as the PBX sees it."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from stasis_dnd.testing.fake_asterisk import ari_json
from stasis_dnd.testing.fake_asterisk.calls import FakeCall, Heard


class AppSocket(Protocol):
    """The app's WebSocket as the PBX sees it."""

    def send(self, text: str, *, last: bool = False) -> bool:
        """Queue a message; False if this socket no longer takes events."""


@dataclass(eq=False)
class Playback:
    """One play request: its media URIs ("parts", given joined by commas)
    play one after the other under one id."""

    id: str
    media: str  # as requested: the parts joined by commas
    language: str
    channel: Channel
    state: str = "queued"
    timer: asyncio.TimerHandle | None = None
    heard: Heard | None = None
    part: int = 0  # index of the part playing (or to play)
    # Set once a sound: part has started; until then a stop is refused.
    controllable: bool = False

    @property
    def parts(self) -> list[str]:
        return self.media.split(",")

    @property
    def current(self) -> str:
        return self.parts[self.part]

    @property
    def is_last(self) -> bool:
        return self.part == len(self.parts) - 1

    def json(self) -> dict[str, str]:
        after = None if self.is_last else self.parts[self.part + 1]
        return ari_json.playback(
            self.id,
            self.current,
            self.channel.id,
            self.language,
            self.state,
            next_media_uri=after,
        )


@dataclass(eq=False)
class Channel:
    call: FakeCall
    name: str
    state: str
    app_data: str
    created: float  # wall clock
    in_app: bool = True
    leaving: bool = False  # continue was queued
    hanging_up: bool = False
    priority: int = 1
    commands: deque[tuple[Any, ...]] = field(default_factory=deque)
    current: Playback | None = None
    pending_event: tuple[str, float] | None = None
    script: asyncio.Task[None] | None = None
    happened: Counter[str] = field(default_factory=Counter)
    variables: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        return self.call.id

    def json(self) -> dict[str, Any]:
        return ari_json.channel(
            channel_id=self.id,
            name=self.name,
            state=self.state,
            caller_name=self.call.name,
            caller_number=self.call.number,
            context="dnd-queue",
            priority=self.priority,
            app_name="Stasis" if self.in_app else "Wait",
            app_data=self.app_data if self.in_app else "10",
            created=self.created,
            language=self.call.language,
        )

    def happen(self, kind: str) -> None:
        """Something the caller notices; wakes script steps waiting for it."""
        self.happened[kind] += 1
        self.changed.set()
        self.changed = asyncio.Event()
