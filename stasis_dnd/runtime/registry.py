"""The calls in the app: one `CallFlow` each, fed by the dispatcher, with its
commands carried out over ARI, the outbox and the timer wheel.

Every outcome of that I/O goes back into the same call's flow as an event
(a channel that vanished is `ChannelGone`, a stored request is
`CallbackStored`); what the caller hears next is always the flow's decision.
A call's last command (hang up, continue) outlives the call: `runtime.final_commands`
carries it through ARI failures, and `sweep` (every minute) takes over
channels parked in the app that no call owns.

Callback requests are stored off the call's worker (`runtime.storing`), and
the flow's `store_timeout` still runs meanwhile (an answer that comes later is
kept: a request stored late is delivered, the caller having heard sorry).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from stasis_dnd.ari.rest import AriError, AriRest, ChannelNotFound
from stasis_dnd.ari.translate import channel_of, stasis_args_of
from stasis_dnd.core import (
    Answer,
    CallbackNotStored,
    CallbackStored,
    CallFlow,
    CallRecovered,
    CancelTimer,
    ChannelGone,
    ChannelHangupRequest,
    Command,
    ContinueInDialplan,
    DrainEnded,
    Event,
    Hangup,
    Play,
    PlaybackFinished,
    RequestCallback,
    StartTimer,
    StasisEnd,
    StasisStart,
    State,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.core.context import parse_stasis_args
from stasis_dnd.hours import open_at
from stasis_dnd.logs import mask_phone
from stasis_dnd.metrics import Metrics
from stasis_dnd.profiles import Profiles
from stasis_dnd.runtime.final_commands import FinalCommands, RetryFinal
from stasis_dnd.runtime.storing import SENT_VARIABLE, CallbackStore, Storing
from stasis_dnd.runtime.timers import TimerHandle, TimerWheel
from stasis_dnd.settings import Profile

log = logging.getLogger("stasis_dnd")


@dataclass(frozen=True, slots=True)
class Recover:
    """Take over a channel after a (re)connect; `in_app` says whether Asterisk
    still lists it in the app."""

    in_app: bool
    generation: int


# (monotonic arrival time, the event socket's connection number, what arrived)
CallItem = tuple[float, int, Event | Recover | RetryFinal]


# Unknown profile names the dialplan gave are each warned about once; the first this many.
_UNKNOWN_PROFILES_KEPT = 100


@dataclass
class Call:
    channel_id: str
    flow: CallFlow
    started: float
    profile: Profile
    # The Stasis() arguments, kept for a recovery that restarts the flow.
    args: tuple[str, ...] = ()
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    # The newest event-socket connection this call was heard on.
    connection: int = 0
    # Arrival time of the event being handled, for the latency histogram.
    arrived: float | None = None


class CallRegistry:
    """All calls of one app; `handle` is the dispatcher's per-item function."""

    def __init__(
        self,
        *,
        profiles: Profiles,
        rest: AriRest,
        store: CallbackStore,
        timers: TimerWheel,
        submit: Callable[[str, CallItem], None],
        metrics: Metrics,
        id_prefix: str,
        store_workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._profiles = profiles
        self._clock = clock  # the wall clock, for business hours
        self._unknown_profiles: set[str] = set()
        self._rest = rest
        self._store = store
        self._timers = timers
        self._submit = submit
        self._metrics = metrics
        self._id_prefix = id_prefix
        self._lock = threading.Lock()
        self._calls: dict[str, Call] = {}
        self.draining = False
        self.final_commands = FinalCommands(
            rest=rest,
            timers=timers,
            submit=lambda channel_id, retry: submit(channel_id, (time.monotonic(), 0, retry)),
            metrics=metrics,
        )
        # Numbers the flows restarted by recovery, so their playback ids never repeat.
        self._restarts = itertools.count(1)
        # Channels the last sweep found in the app with no call (the sweep's own thread).
        self._orphans: set[str] = set()
        self._storing = Storing(
            rest=rest, store=store, submit=submit, metrics=metrics, workers=store_workers
        )

    def start(self) -> None:
        self._storing.start()

    def stop(self) -> None:
        self._storing.stop()

    def channel_ids(self) -> list[str]:
        with self._lock:
            return list(self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    def handle(self, channel_id: str, item: CallItem) -> None:
        arrived, connection, what = item
        if isinstance(what, RetryFinal):
            self.final_commands.retry(channel_id)
            return
        call = self._calls.get(channel_id)
        if isinstance(what, Recover):
            self._recover(channel_id, call, what)
            return
        if isinstance(what, CallbackStored | CallbackNotStored):
            self._late_answer(channel_id, call, what)
        if call is None:
            if isinstance(what, StasisStart | StasisEnd | ChannelHangupRequest):
                # Left (or back in) the app: a final command still pending is moot.
                self.final_commands.left(channel_id)
            if not isinstance(what, StasisStart):
                log.debug("event=skipped channel=%s reason=unknown_channel", channel_id)
                return
            call = self._new_call(channel_id, restarted=False, args=what.args)
            if self.draining:
                self._feed(call, DrainEnded())
        call.arrived = arrived
        call.connection = max(call.connection, connection)
        if isinstance(what, StasisStart):
            what = replace(what, open=self._open_now(call.profile))
        self._feed(call, what)
        if isinstance(what, StasisStart) and call.flow.unknown_args:
            # A dialplan typo (e.g. "qeue=") would otherwise drop a fact silently.
            log.info(
                "event=stasis_args_ignored channel=%s args=%r", channel_id, call.flow.unknown_args
            )

    # --- feeding the flow ---------------------------------------------------

    def _new_call(self, channel_id: str, *, restarted: bool, args: tuple[str, ...]) -> Call:
        prefix = (
            f"{self._id_prefix}.{next(self._restarts)}-" if restarted else f"{self._id_prefix}-"
        )
        profile = self._profile_for(channel_id, args)
        flow = CallFlow(profile.ivr, id_prefix=prefix, profile=profile.name)
        call = Call(channel_id, flow, time.monotonic(), profile, args)
        with self._lock:
            self._calls[channel_id] = call
        self._metrics.active_calls.inc()
        return call

    def _profile_for(self, channel_id: str, args: tuple[str, ...]) -> Profile:
        context, _ = parse_stasis_args(args)
        choice = self._profiles.choose(named=context.profile, queue=context.queue)
        if choice.unknown:
            with self._lock:
                known = self._unknown_profiles
                first = choice.unknown not in known and len(known) < _UNKNOWN_PROFILES_KEPT
                if first:
                    known.add(choice.unknown)
            if first:
                log.warning(
                    "event=unknown_profile channel=%s profile=%r (no [profile:%s] in the"
                    " config: the default profile serves its calls)",
                    channel_id,
                    choice.unknown,
                    choice.unknown,
                )
        return choice.profile

    def _open_now(self, profile: Profile) -> bool:
        # Decided here, when a call starts; the flow gets the answer as data.
        ivr = profile.ivr
        return open_at(self._clock(), ivr.hours, ivr.closed_dates, ivr.timezone)

    def _feed(self, call: Call, event: Event) -> None:
        pending: deque[Event] = deque([event])
        while pending:
            current = pending.popleft()
            commands = call.flow.handle(current)
            if call.flow.anomaly:
                log.debug("event=anomaly channel=%s detail=%r", call.channel_id, call.flow.anomaly)
            if call.flow.warning:
                log.warning(
                    "event=flow_warning channel=%s detail=%r", call.channel_id, call.flow.warning
                )
            for command in commands:
                follow_up = self._carry_out(call, command)
                if follow_up is not None:
                    pending.append(follow_up)
                    if isinstance(follow_up, ChannelGone):
                        break  # the rest of this batch is for a channel that is gone
        if call.flow.ending is not None:
            self._finish(call)

    def _carry_out(self, call: Call, command: Command) -> Event | None:
        channel_id = call.channel_id
        try:
            if isinstance(command, Play):
                self._observe(call)
                try:
                    self._rest.play(
                        channel_id, command.playback_id, command.media, command.language
                    )
                except ChannelNotFound:
                    raise
                except AriError as error:
                    log.warning("event=play_failed channel=%s error=%r", channel_id, str(error))
                    return PlaybackFinished(command.playback_id, "failed")
            elif isinstance(command, StopPlayback):
                self._observe(call)
                self._rest.stop_playback(command.playback_id)
            elif isinstance(command, StartTimer):
                call.timers[command.timer_id] = self._timers.schedule(
                    command.seconds, self._timer_callback(channel_id, command.timer_id)
                )
            elif isinstance(command, CancelTimer):
                handle = call.timers.pop(command.timer_id, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(command, RequestCallback):
                self._request_callback(call, command)
            elif isinstance(command, Answer):
                self._observe(call)
                self._rest.answer(channel_id)
            elif isinstance(command, Hangup | ContinueInDialplan):
                self._observe(call)
                self.final_commands.send(channel_id, command)
        except ChannelNotFound:
            log.debug("event=channel_gone channel=%s during=%s", channel_id, type(command).__name__)
            return ChannelGone()
        except AriError as error:
            log.warning(
                "event=ari_error channel=%s command=%s error=%r",
                channel_id,
                type(command).__name__,
                str(error),
            )
        return None

    def _request_callback(self, call: Call, command: RequestCallback) -> None:
        # The answer comes back through the dispatcher, as CallbackStored/NotStored.
        self._storing.request(call.channel_id, command.phone, command.caller_id, command.context)

    def _late_answer(
        self, channel_id: str, call: Call | None, answer: CallbackStored | CallbackNotStored
    ) -> None:
        if call is not None and call.flow.state is State.STORING:
            return  # in time
        stored = isinstance(answer, CallbackStored)
        log.log(
            logging.WARNING if call is not None else logging.DEBUG,
            "event=callback_answer_late channel=%s stored=%s%s",
            channel_id,
            stored,
            " (the caller heard sorry; the request will be delivered)" if stored else "",
        )

    def _timer_callback(self, channel_id: str, timer_id: str) -> Callable[[], None]:
        def fire() -> None:
            self._submit(channel_id, (time.monotonic(), 0, TimerFired(timer_id)))

        return fire

    def _observe(self, call: Call) -> None:
        # Latency from an event's arrival to the first command it caused.
        if call.arrived is not None:
            self._metrics.latency.observe(time.monotonic() - call.arrived)
            call.arrived = None

    def _finish(self, call: Call, *, quiet: bool = False) -> None:
        for handle in call.timers.values():
            handle.cancel()
        call.timers.clear()
        with self._lock:
            if self._calls.get(call.channel_id) is not call:
                return
            del self._calls[call.channel_id]
        self._metrics.active_calls.dec()
        if quiet:
            return
        flow = call.flow
        outcome = flow.outcome.value if flow.outcome else "unknown"
        self._metrics.calls.labels(outcome).inc()
        log.info(
            "event=call channel=%s caller=%s outcome=%s ending=%s duration=%.1fs",
            call.channel_id,
            mask_phone(flow.phone) if flow.phone else "none",
            outcome,
            flow.ending.value if flow.ending else "none",
            time.monotonic() - call.started,
        )

    # --- recovery -----------------------------------------------------------

    def _recover(self, channel_id: str, call: Call | None, recover: Recover) -> None:
        if call is None and self.final_commands.recover(channel_id, recover.in_app):
            return  # its hang-up or continue is still under way: not a new call
        if not recover.in_app:
            # Heard from on this connection: it came after Asterisk listed the app's
            # channels and is alive. Otherwise it left while the socket was down.
            if call is not None and call.connection < recover.generation:
                self._feed(call, ChannelGone())
            return
        try:
            found = self._rest.get_channel(channel_id)
            channel = channel_of(found)
        except ChannelNotFound:
            if call is not None:
                self._feed(call, ChannelGone())
            return
        except (AriError, ValueError) as error:
            log.warning("event=recover_failed channel=%s error=%r", channel_id, str(error))
            return
        if call is not None and call.connection >= recover.generation:
            return  # heard from on this connection already: nothing was lost
        if call is not None and call.flow.state is State.STORING:
            # No ARI event comes while a request is stored, and none is lost: the
            # answer (bounded by store_timeout) moves the call on; a fresh menu
            # would offer the key again to a caller whose request is on its way.
            call.connection = recover.generation
            return
        if call is not None:
            # Events may have been lost while disconnected: start this call afresh.
            if call.flow.playing is not None:
                self._stop_quietly(call.flow.playing)
            self._finish(call, quiet=True)
        stored = self._store.stored_for_channel(channel_id) or self._marked_sent(channel_id)
        # After a restart, the arguments Asterisk still shows for the channel's Stasis().
        args = call.args if call is not None else stasis_args_of(found)
        fresh = self._new_call(channel_id, restarted=True, args=args)
        fresh.connection = recover.generation  # a second Recover of this connection finds it
        self._metrics.recovered.inc()
        log.info("event=recovered channel=%s callback_stored=%s", channel_id, stored)
        recovered = CallRecovered(
            channel, callback_stored=stored, open=self._open_now(fresh.profile), args=args
        )
        self._feed(fresh, recovered)

    def _marked_sent(self, channel_id: str) -> bool:
        try:
            return bool(self._rest.get_variable(channel_id, SENT_VARIABLE))
        except AriError as error:
            # Answering no offers the menu again; a repeat is deduplicated.
            log.warning("event=recover_read_failed channel=%s error=%r", channel_id, str(error))
            return False

    def _stop_quietly(self, playback_id: str) -> None:
        with contextlib.suppress(AriError):  # it may have ended on its own meanwhile
            self._rest.stop_playback(playback_id)

    # --- the sweep ----------------------------------------------------------

    def sweep(self, in_app: Iterable[str], generation: int) -> None:
        """The safety net, called every minute while connected with the channels
        Asterisk lists in the app: those that no call owns in two sweeps running
        (so not a caller whose StasisStart is on its way) are recovered like
        parked channels after a reconnect; those whose final command gave up are
        tried again, or forgotten once they have left."""
        listed = set(in_app)
        finals = set(self.final_commands.channel_ids())
        orphans = listed - set(self.channel_ids()) - finals
        found, self._orphans = orphans & self._orphans, orphans
        now = time.monotonic()
        for channel_id in sorted(found):
            log.warning(
                "event=orphan_channel channel=%s (in the app, but no call had it; taking it over)",
                channel_id,
            )
            self._submit(channel_id, (now, generation, Recover(True, generation)))
        for channel_id in finals:
            self._submit(channel_id, (now, generation, Recover(channel_id in listed, generation)))

    # --- a call whose handling raised, a call handed over ---------------------

    def fail_safe(self, channel_id: str) -> None:
        """Handling this channel raised: drop its call (timers, flow) and send
        the channel back to the dialplan like any final command, rather than
        leave it with a flow whose commands were never carried out."""
        call = self._calls.get(channel_id)
        # Where the flow itself would send it (asked before the call is dropped).
        target = (
            call.flow.continue_target()
            if call is not None
            else self._profiles.default.ivr.continue_to
        )
        if call is not None:
            if call.flow.playing is not None:
                # A continue waits for the playing prompt to end: stop it first.
                self._stop_quietly(call.flow.playing)
            self._finish(call, quiet=True)
        log.warning(
            "event=fail_safe channel=%s (handling it failed; sent back to the dialplan)",
            channel_id,
        )
        self.final_commands.send(channel_id, ContinueInDialplan(target))

    def hand_over(self, channel_id: str) -> None:
        """Another process holds the app name now: forget the channel without
        touching it (that process takes it over from Asterisk's list)."""
        call = self._calls.get(channel_id)
        if call is not None:
            self._finish(call, quiet=True)
        self.final_commands.drop(channel_id)
