"""What happens inside a fake channel: its command queue runs, playbacks
start and finish, a hang-up ends everything at once, and a continue leaves the
app; each step emits the events Asterisk 22 sends (see `pbx`'s docstring).

Everything here runs on the fake's event loop thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from stasis_dnd.testing.fake_asterisk import ari_json
from stasis_dnd.testing.fake_asterisk.calls import (
    CALLER_HUNG_UP,
    CONTINUED,
    HUNGUP_BY_APP,
    Heard,
    Latency,
    SentEvent,
)
from stasis_dnd.testing.fake_asterisk.channel import AppSocket, Channel, Playback
from stasis_dnd.testing.fake_asterisk.event_filter import EventFilter

# Events the app is expected to act on; the next command on the channel is
# timed against the latest of them (Latency).
ACTIONABLE = frozenset({"StasisStart", "ChannelDtmfReceived", "PlaybackFinished"})
# The sounds `digits:` says for keys other than 0-9.
DIGIT_SOUND = {"*": "digits/star", "#": "digits/pound", "-": "digits/minus"}
# ast_softhangup(chan, AST_SOFTHANGUP_EXPLICIT) publishes the flag as "cause".
APP_HANGUP_FIELDS: dict[str, Any] = {"cause": 32, "soft": True}
CALLER_HANGUP_FIELDS: dict[str, Any] = {"cause": 16}


class ChannelLife:
    """The channel side of `Pbx`, which sets these attributes."""

    app: str
    sounds: dict[str, float]
    dialplan_linger: float
    notify: Callable[[], None]
    socket: AppSocket | None
    event_filter: EventFilter
    channels: dict[str, Channel]
    playbacks: dict[str, Playback]
    counters: Counter[str]
    latencies: list[Latency]

    def _pump(self, channel: Channel) -> None:
        """Run queued commands until one blocks (a playback) or none are left."""
        while channel.current is None and channel.commands and not channel.hanging_up:
            command = channel.commands.popleft()
            if command[0] == "answer":
                if channel.state != "Up":
                    channel.state = "Up"
                    channel.call.answered = True
                    self._emit(channel, "ChannelStateChange", {"channel": channel.json()})
                    channel.happen("answer")
                command[1].set_result(True)
            elif command[0] == "play":
                self._start_playback(channel, command[1])
            else:
                channel.leaving = True
        if channel.leaving and channel.current is None and not channel.commands:
            self._leave_app(channel)

    def _start_playback(self, channel: Channel, playback: Playback) -> None:
        if playback.state == "done":  # stopped while queued
            self._report_finished(playback)
            return
        channel.current = playback
        playback.heard = Heard(playback.id, playback.media, time.monotonic())
        channel.call.heard.append(playback.heard)
        self.counters["playbacks"] += 1
        channel.happen("playback_start")
        self._start_part(playback)

    def _start_part(self, playback: Playback) -> None:
        """Play the current part: PlaybackStarted for each one, as Asterisk sends."""
        part = playback.current
        playback.state = "playing"
        if part.startswith("sound:"):
            playback.controllable = True
        if playback.heard is not None:
            playback.heard.parts.append(part)
        channel = playback.channel
        self._emit(channel, "PlaybackStarted", {"playback": playback.json()})
        channel.happen(f"media:{part}")
        duration = self._duration(part)
        if not duration:  # nothing to hear (digits without sounds) ends at once too
            self._end_part(playback, played=duration is not None)
        else:
            loop = asyncio.get_running_loop()
            playback.timer = loop.call_later(duration, self._end_part, playback, True)

    def _end_part(self, playback: Playback, played: bool) -> None:
        """A part ended: PlaybackContinuing and the next part, or the end.
        A part that could not play is skipped; only the last one fails the play."""
        playback.timer = None
        if playback.is_last:
            outcome = "done" if played else "failed"
            self._finish_playback(playback, outcome, outcome)
            return
        playback.state = "continuing"
        self._emit(playback.channel, "PlaybackContinuing", {"playback": playback.json()})
        playback.part += 1
        self._start_part(playback)

    def _duration(self, media: str) -> float | None:
        """How long a part plays; None if Asterisk cannot play it (no such
        sound, a scheme the fake does not know)."""
        if media.startswith("digits:"):
            # One sound per key; a key without one (a "+") is skipped silently.
            keys = media[len("digits:") :]
            return sum(self.sounds.get(DIGIT_SOUND.get(k, f"digits/{k}"), 0.0) for k in keys)
        if not media.startswith("sound:"):
            return None
        return self.sounds.get(media[len("sound:") :])

    def _finish_playback(self, playback: Playback, state: str, outcome: str) -> None:
        if playback.timer is not None:
            playback.timer.cancel()
        playback.state = state
        if playback.heard is not None:
            playback.heard.ended = time.monotonic()
            playback.heard.outcome = outcome
        channel = playback.channel
        channel.current = None
        self._report_finished(playback)
        channel.happen("playback_end")
        self._pump(channel)

    def _report_finished(self, playback: Playback) -> None:
        if self.playbacks.get(playback.id) is playback:
            del self.playbacks[playback.id]
        self._emit(playback.channel, "PlaybackFinished", {"playback": playback.json()})

    def _end_call(self, channel: Channel, *, by_app: bool) -> None:
        fields = APP_HANGUP_FIELDS if by_app else CALLER_HANGUP_FIELDS
        channel.hanging_up = True
        self._emit(channel, "ChannelHangupRequest", {"channel": channel.json()}, first=fields)
        if channel.current is not None:
            self._finish_playback(channel.current, "failed", "hangup")
        for command in channel.commands:
            if command[0] == "answer":
                command[1].set_result(False)
            elif command[0] == "play" and command[1].state == "done":
                self._report_finished(command[1])
            elif command[0] == "play":
                playback = command[1]
                playback.state = "playing"
                self._emit(channel, "PlaybackStarted", {"playback": playback.json()})
                playback.state = "failed"
                self._report_finished(playback)
        channel.commands.clear()
        self._emit(channel, "StasisEnd", {"channel": channel.json()})
        channel.in_app = False
        self._destroy(channel)
        disposition = HUNGUP_BY_APP if by_app else CALLER_HUNG_UP
        self.counters[disposition] += 1
        channel.call._finish(disposition)
        self.notify()

    def _leave_app(self, channel: Channel) -> None:
        self._emit(channel, "StasisEnd", {"channel": channel.json()})
        channel.in_app = False
        channel.priority += 1
        self._stop_script(channel)
        self.counters[CONTINUED] += 1
        channel.call._finish(CONTINUED)
        # The caller goes on in the dialplan for a while, then the call ends.
        asyncio.get_running_loop().call_later(self.dialplan_linger, self._destroy, channel)
        self.notify()

    def _destroy(self, channel: Channel) -> None:
        if self.channels.get(channel.id) is channel:
            del self.channels[channel.id]
        self._stop_script(channel)

    def _stop_script(self, channel: Channel) -> None:
        channel.changed.set()  # a waiting step sees the call has left the app
        task = channel.script
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _emit(
        self, channel: Channel, kind: str, body: dict[str, Any], first: dict[str, Any] | None = None
    ) -> None:
        if not channel.in_app:
            return
        if not self.event_filter.allows(kind):
            self.counters["events_filtered"] += 1
            return
        now = time.monotonic()
        socket = self.socket
        delivered = socket is not None and socket.send(ari_json.event(kind, self.app, body, first))
        channel.call.events.append(SentEvent(now, kind, delivered))
        self.counters["events_sent" if delivered else "events_dropped"] += 1
        if kind in ACTIONABLE:
            channel.pending_event = (kind, now)

    def _time_command(self, channel: Channel, command: str) -> None:
        if channel.pending_event is not None:
            kind, at = channel.pending_event
            self.latencies.append(Latency(channel.id, kind, command, time.monotonic() - at))
            channel.pending_event = None
