"""The fake's telephony side: channels in Stasis, their command queues,
playbacks, caller scripts and the events they cause.

Theory of operation (as Asterisk 22 behaved on this machine):
- Each channel has a command queue. answer, play and continue are queued and
  run in order; a play holds the queue until it finishes, so a second play
  waits for the first, and an answer sent during a prompt is answered (HTTP)
  only when the prompt ends. continue takes effect when the queue is empty.
- DELETE /playbacks acts at once: a playing one ends "done"; a queued one is
  cancelled and reports PlaybackFinished "done" when its turn comes.
- Hang-up (caller or app) acts at once: ChannelHangupRequest (cause 16 from the
  caller; cause 32 and soft=true from DELETE /channels), the current playback
  ends "failed", each queued one starts and fails, then StasisEnd. No
  ChannelDestroyed: the app is unsubscribed at StasisEnd.
- Events for the app are dropped while no WebSocket is connected.
- A play of several media (`media=a,b,c`) is one playback: PlaybackStarted
  for each part, PlaybackContinuing between parts, one PlaybackFinished. A
  part that does not exist is skipped; only a missing last part ends it
  "failed". `digits:` says each digit with the sound digits/N, skipping
  what has no sound (a "+", a digit whose sound is not in the table).
  DELETE stops the whole playback during a `sound:` part; during a `digits:`
  part it answers 204 and stops nothing; before any `sound:` part has
  started it answers 500.

Not modelled: media schemes other than `sound:` and `digits:` (they fail as
a missing sound does).

Everything here runs on the fake's event loop thread.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from stasis_dnd.testing.fake_asterisk import ari_json
from stasis_dnd.testing.fake_asterisk.calls import (
    STASIS_FAILED,
    FakeCall,
    Latency,
    RestRequest,
)
from stasis_dnd.testing.fake_asterisk.channel import AppSocket, Channel, Playback
from stasis_dnd.testing.fake_asterisk.event_filter import EventFilter
from stasis_dnd.testing.fake_asterisk.lifecycle import ChannelLife
from stasis_dnd.testing.fake_asterisk.script import WAIT_STEPS, Step

HANGUP_REASONS = frozenset({"normal", "busy", "congestion", "no_answer", "answered_elsewhere"})

Reply = tuple[int, Any]  # HTTP status, JSON body (None for no content)

# Channel requests `fail_requests` can make fail.
REST_FAULT_KINDS = frozenset({"answer", "play", "continue", "hangup", "get"})

# Sounds with their real lengths in seconds (sounds/en/custom,
# asterisk-core-sounds-en gsm). What an install of the previous version has:
# its two prompts and the Asterisk sounds the app plays.
PREVIOUS_SOUNDS: dict[str, float] = {
    "custom/IVR_DND_OPERATORS": 4.73,
    "custom/IVR_DND_CALLBACK_CONFIRMED": 4.75,
    "sorry-youre-having-problems": 2.0,
    "vm-goodbye": 0.88,
}
# The prompts of the read-back and number entry.
READBACK_SOUNDS: dict[str, float] = {
    "custom/IVR_DND_ALREADY_REQUESTED": 4.19,
    "custom/IVR_DND_READBACK": 2.02,
    "custom/IVR_DND_READBACK_MENU": 4.12,
    "custom/IVR_DND_ENTER_NUMBER": 6.55,
    "custom/IVR_DND_NUMBER_INVALID": 2.21,
    "custom/IVR_DND_NO_NUMBER": 2.19,
}
# The prompts outside business hours.
HOURS_SOUNDS: dict[str, float] = {
    "custom/IVR_DND_CLOSED": 5.18,
    "custom/IVR_DND_CALLBACK_NEXT_DAY": 8.15,
}
# The core sounds the read-back and `digits:` say (ru's take 0.5 s).
DIGIT_SOUNDS: dict[str, float] = {
    **{f"digits/{digit}": 0.85 for digit in range(10)},
    "digits/star": 0.7,
    "digits/pound": 0.6,
}
# The default: an Asterisk with every prompt of the project and its core digits.
DEFAULT_SOUNDS: dict[str, float] = {
    **PREVIOUS_SOUNDS,
    **READBACK_SOUNDS,
    **HOURS_SOUNDS,
    **DIGIT_SOUNDS,
}


class Pbx(ChannelLife):
    """Channels, playbacks and the app's socket; see the module docstring."""

    def __init__(
        self,
        app: str,
        sounds: dict[str, float],
        languages: tuple[str, ...],
        dialplan_linger: float,
        notify: Callable[[], None],
    ) -> None:
        self.app = app
        self.sounds = dict(sounds)
        self.languages = languages
        self.dialplan_linger = dialplan_linger
        self.notify = notify
        self.started = time.time()
        self.socket: AppSocket | None = None
        self.app_registered = False
        self.event_filter = EventFilter()
        self.channels: dict[str, Channel] = {}
        self.playbacks: dict[str, Playback] = {}
        self.calls: dict[str, FakeCall] = {}
        self.counters: Counter[str] = Counter()
        # REST requests per channel id as they arrive (before any delay or answer).
        self.arrivals: Counter[str] = Counter()
        self.latencies: list[Latency] = []
        self.rest_delay = 0.0
        self.channel_delays: dict[str, float] = {}
        # (channel id, request kind) -> (HTTP status or 0 to close unanswered,
        # how many more requests fail; None: until cleared).
        self.rest_faults: dict[tuple[str, str], tuple[int, int | None]] = {}
        self.lock = threading.Lock()  # guards `calls` for readers on other threads
        self._ids = itertools.count(1)

    # --- the app's socket ---------------------------------------------------

    def attach(self, socket: AppSocket) -> None:
        """A WebSocket for our app connected; it replaces any earlier one."""
        old, self.socket = self.socket, socket
        if old is not None:
            # Filtered out, the old socket hears nothing (and gets no more events).
            if self.event_filter.allows("ApplicationReplaced"):
                old.send(ari_json.application_replaced(self.app), last=True)
            self.counters["ws_replaced"] += 1
        self.app_registered = True
        self.counters["ws_connections"] += 1
        self.notify()

    def detach(self, socket: AppSocket) -> None:
        if self.socket is socket:
            self.socket = None
            if not self.channels_in_app():
                self.event_filter.clear()  # Asterisk destroys the app, and its filter
            self.notify()

    def forget_app(self) -> None:
        """Unregister the app but leave its socket open (and answering pings)."""
        self.socket = None
        self.app_registered = False
        self.event_filter.clear()
        self.counters["app_forgotten"] += 1
        self.notify()

    def channels_in_app(self) -> list[str]:
        return [ch.id for ch in self.channels.values() if ch.in_app]

    def app_exists(self) -> bool:
        # Asterisk forgets an app once it has neither a socket nor channels.
        if self.socket is None and not self.channels_in_app():
            self.app_registered = False
            self.event_filter.clear()
        return self.app_registered

    # --- callers ------------------------------------------------------------

    def place_call(
        self,
        *,
        number: str,
        name: str,
        state: str,
        language: str,
        args: tuple[str, ...],
        script: tuple[Step, ...],
        act: Callable[[FakeCall], Callable[[tuple[object, ...]], None]],
    ) -> FakeCall:
        """A caller reaches Stasis(app, args...) in the dialplan."""
        serial = next(self._ids)
        call = FakeCall(
            id=f"{int(self.started)}.{serial}", number=number, name=name, language=language,
            args=args,
        )  # fmt: skip
        call._act = act(call)
        with self.lock:
            self.calls[call.id] = call
        self.counters["calls"] += 1
        if self.socket is None:
            self.counters["stasis_failed"] += 1
            call._finish(STASIS_FAILED)
            self.notify()
            return call
        channel = Channel(
            call=call,
            name=f"PJSIP/trunk-{serial:08x}",
            state=state,
            app_data=",".join((self.app, *args)),
            created=time.time(),
        )
        self.channels[call.id] = channel
        if state == "Up":
            call.answered = True
            channel.happen("answer")
        self._emit(channel, "StasisStart", {"args": list(args), "channel": channel.json()})
        if script:
            channel.script = asyncio.get_running_loop().create_task(self._run(channel, script))
        return call

    def place_from_json(
        self, spec: dict[str, Any], act: Callable[[FakeCall], Callable[[tuple[object, ...]], None]]
    ) -> str:
        """A call asked for on the control endpoint; its channel id."""
        state = str(spec.get("state", "Up"))
        if state not in ari_json.CHANNEL_STATES:
            raise ValueError(f"state must be one of {sorted(ari_json.CHANNEL_STATES)}")
        call = self.place_call(
            number=str(spec.get("number", "+79001234567")),
            name=str(spec.get("name", "")),
            state=state,
            language=str(spec.get("language", "en")),
            args=tuple(str(a) for a in spec.get("args", ("TIMEOUT",))),
            script=spec["script"],
            act=act,
        )
        return call.id

    def caller_acts(self, call: FakeCall, step: tuple[Any, ...]) -> None:
        """Run one caller action (dtmf / hangup) on a call."""
        channel = self.channels.get(call.id)
        if channel is None:
            return
        if step[0] == "dtmf":
            if channel.in_app and not channel.hanging_up:
                call.digits.append(step[1])
                body = {"digit": step[1], "duration_ms": step[2], "channel": channel.json()}
                self._emit(channel, "ChannelDtmfReceived", body)
        elif step[0] == "hangup":
            if channel.in_app:
                self._end_call(channel, by_app=False)
            else:
                self._destroy(channel)

    async def _run(self, channel: Channel, script: tuple[Step, ...]) -> None:
        consumed: Counter[str] = Counter()
        for step in script:
            if not channel.in_app:
                return
            kind = step[0]
            if kind == "sleep":
                await asyncio.sleep(step[1])
            elif kind in WAIT_STEPS or kind == "wait_media":
                what = WAIT_STEPS[kind] if kind in WAIT_STEPS else f"media:{step[1]}"
                while channel.in_app and channel.happened[what] <= consumed[what]:
                    await channel.changed.wait()
                consumed[what] += 1
            elif channel.in_app:
                self.caller_acts(channel.call, step)

    # --- REST operations ------------------------------------------------------

    def delay_for(self, channel_id: str | None) -> float:
        if channel_id is not None and channel_id in self.channel_delays:
            return self.channel_delays[channel_id]
        return self.rest_delay

    def take_fault(self, channel_id: str, kind: str) -> int | None:
        """The failure a test set for this request, if any, counted down."""
        key = (channel_id, kind)
        fault = self.rest_faults.get(key)
        if fault is None:
            return None
        status, left = fault
        if left is not None and left <= 1:
            del self.rest_faults[key]
        elif left is not None:
            self.rest_faults[key] = (status, left - 1)
        return status

    def get_channel(self, channel_id: str) -> Reply:
        channel = self.channels.get(channel_id)
        if channel is None:
            return 404, ari_json.error("Channel not found")
        return 200, channel.json()

    def channel_variable(self, channel_id: str, name: str, value: str | None) -> Reply:
        """Set (`value` given) or read a channel variable, as Asterisk answers."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return 404, ari_json.error("Channel not found")
        if not name:
            return 400, ari_json.error("Variable name is required")
        if value is not None:
            channel.variables[name] = value
            return 204, None
        if name not in channel.variables:
            return 404, ari_json.error("Provided variable was not found")
        return 200, {"value": channel.variables[name]}

    def _control(self, channel_id: str, command: str) -> Channel | Reply:
        """The channel if the app may act on it, else the error reply."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return 404, ari_json.error("Channel not found")
        if not channel.in_app:
            return 409, ari_json.error("Channel not in Stasis application")
        if channel.state in ari_json.INVALID_STATES:
            return 412, ari_json.error("Channel in invalid state")
        self._time_command(channel, command)
        return channel

    async def answer(self, channel_id: str) -> Reply:
        channel = self._control(channel_id, "answer")
        if not isinstance(channel, Channel):
            return channel
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        channel.commands.append(("answer", done))
        self._pump(channel)
        if await done:
            return 204, None
        return 500, ari_json.error("Failed to answer channel")

    def play(self, channel_id: str, playback_id: str | None, media: str, lang: str) -> Reply:
        channel = self._control(channel_id, "play")
        if not isinstance(channel, Channel):
            return channel
        if not all(media.split(",")):
            return 500, ari_json.error("Failed to queue media for playback")
        playback = Playback(
            id=playback_id or str(uuid.uuid4()),
            media=media,
            language=lang or channel.call.language,
            channel=channel,
        )
        self.playbacks[playback.id] = playback
        channel.commands.append(("play", playback))
        body = playback.json()  # "queued", as Asterisk answers even if it starts at once
        self._pump(channel)
        return 201, body

    def get_playback(self, playback_id: str) -> Reply:
        playback = self.playbacks.get(playback_id)
        if playback is None:
            return 404, ari_json.error("Playback not found")
        return 200, playback.json()

    def playback_channel(self, playback_id: str) -> str | None:
        playback = self.playbacks.get(playback_id)
        return None if playback is None else playback.channel.id

    def stop_playback(self, playback_id: str) -> Reply:
        playback = self.playbacks.get(playback_id)
        if playback is None:
            return 404, ari_json.error("Playback not found")
        self._time_command(playback.channel, "stop_playback")
        if playback.state in ("queued", "done"):
            playback.state = "done"  # cancelled; reported when its turn comes
        elif not playback.controllable:
            return 500, ari_json.error("Could not stop playback")
        elif playback.current.startswith("sound:"):
            self._finish_playback(playback, "done", "stopped")
        # else: a digits: part does not listen for the stop; all of it plays on.
        return 204, None

    def continue_in_dialplan(self, channel_id: str) -> Reply:
        channel = self._control(channel_id, "continue")
        if not isinstance(channel, Channel):
            return channel
        channel.commands.append(("continue",))
        self._pump(channel)
        return 204, None

    def hangup(self, channel_id: str, reason: str) -> Reply:
        channel = self.channels.get(channel_id)
        if channel is None:
            return 404, ari_json.error("Channel not found")
        if reason and reason not in HANGUP_REASONS:
            return 400, ari_json.error("Invalid reason for hangup reason provided")
        if channel.in_app:
            self._time_command(channel, "hangup")
            self._end_call(channel, by_app=True)
        else:
            self._destroy(channel)
        return 204, None

    def application(self, app: str) -> Reply:
        if app != self.app or not self.app_exists():
            return 404, ari_json.error("Application not found")
        body = ari_json.application(app, self.channels_in_app())
        return 200, {**body, **self.event_filter.json()}

    def sound(self, sound_id: str) -> Reply:
        if sound_id not in self.sounds:
            return 404, ari_json.error("Sound not found")
        return 200, ari_json.sound(sound_id, self.languages)

    def record_request(
        self, channel_id: str | None, *, at: float, method: str, path: str,
        query: dict[str, str], status: int,
    ) -> None:  # fmt: skip
        self.counters["rest_requests"] += 1
        if status >= 400:
            self.counters["rest_errors"] += 1
        call = self.calls.get(channel_id) if channel_id else None
        if call is not None:
            call.requests.append(RestRequest(at, method, path, query, status))
