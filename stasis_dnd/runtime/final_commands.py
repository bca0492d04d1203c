"""The last command of a call, a hang-up or a continue, carried through ARI
failures that may pass, so that no caller is left parked in silence.

The flow has already decided and ended when this runs; what is left is I/O,
so it lives in the runtime. A 404/409/412 means the channel is gone or out of
the app: done. A 5xx, a timeout or a lost connection is retried with
back-off and jitter for `retry_for` seconds (30). After that, or at once for
an error that cannot pass (400, 401, 403), the channel is "stuck": logged at
ERROR once per channel, counted in `stasis_dnd_channels_stuck_total`, and
tried again by the app's periodic sweep for as long as Asterisk lists it in
the app. Retries are timers that come back through the dispatcher, so no
worker thread sleeps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from stasis_dnd.ari.rest import AriError, AriRest, AriUnavailable, ChannelNotFound
from stasis_dnd.backoff import Backoff
from stasis_dnd.core import ContinueInDialplan, Hangup
from stasis_dnd.metrics import Metrics
from stasis_dnd.runtime.timers import TimerHandle, TimerWheel

log = logging.getLogger("stasis_dnd")

# Long enough for an Asterisk that is restarting its HTTP server or briefly
# overloaded; short enough that a caller does not sit in silence for minutes.
RETRY_FOR = 30.0
# First retry within 0.5 s, then up to 1, 2, 4, 5, 5, ... s (full jitter).
RETRY_BASE = 0.5
RETRY_CAP = 5.0
# Channels already reported stuck (ERROR + metric once each), remembered up to this many.
_REPORTED_MEMORY = 1000

FinalCommand = Hangup | ContinueInDialplan


@dataclass(frozen=True, slots=True)
class RetryFinal:
    """A dispatcher item: time to send a channel's failed final command again."""


@dataclass
class _Final:
    command: FinalCommand
    deadline: float
    backoff: Backoff = field(default_factory=lambda: Backoff(RETRY_BASE, RETRY_CAP))
    tries: int = 0
    timer: TimerHandle | None = None
    # Given up until the sweep finds the channel still in the app.
    stuck: bool = False


def _name(command: FinalCommand) -> str:
    return "hangup" if isinstance(command, Hangup) else "continue"


class FinalCommands:
    """Final commands per channel. Each channel's methods run on its own
    dispatcher worker, one at a time; `channel_ids` and `retrying` may be
    called from any thread."""

    def __init__(
        self,
        *,
        rest: AriRest,
        timers: TimerWheel,
        submit: Callable[[str, RetryFinal], None],
        metrics: Metrics,
    ) -> None:
        self._rest = rest
        self._timers = timers
        self._submit = submit
        self._metrics = metrics
        self.retry_for = RETRY_FOR
        self._lock = threading.Lock()
        self._finals: dict[str, _Final] = {}
        self._reported: OrderedDict[str, None] = OrderedDict()

    def channel_ids(self) -> list[str]:
        """Channels whose final command has not gone through yet."""
        with self._lock:
            return list(self._finals)

    def retrying(self) -> int:
        """How many final commands are being retried (not given up)."""
        with self._lock:
            return sum(1 for f in self._finals.values() if not f.stuck)

    def send(self, channel_id: str, command: FinalCommand) -> None:
        """Carry out the call's final command; failures are retried as above."""
        final = _Final(command, time.monotonic() + self.retry_for)
        self._attempt(channel_id, final)

    def retry(self, channel_id: str) -> None:
        """A retry timer fired (`RetryFinal`)."""
        final = self._finals.get(channel_id)
        if final is None or final.stuck or final.timer is None:
            return  # done or given up meanwhile
        final.timer = None
        self._metrics.final_retries.labels(_name(final.command)).inc()
        self._attempt(channel_id, final)

    def left(self, channel_id: str) -> None:
        """Asterisk says the channel left the app or is hanging up: nothing more to do."""
        final = self._forget(channel_id)
        if final is not None:
            log.info(
                "event=%s_not_needed channel=%s tries=%d (the channel left the app)",
                _name(final.command),
                channel_id,
                final.tries,
            )

    def recover(self, channel_id: str, in_app: bool) -> bool:
        """On a (re)connect or a sweep: True if this channel's final command
        owns it (retrying, or given up and tried again now), False if not ours."""
        final = self._finals.get(channel_id)
        if final is None:
            return False
        if not in_app:
            self.left(channel_id)
        elif final.stuck:
            # Still parked: a new round of retries rather than a fresh menu.
            self._metrics.final_retries.labels(_name(final.command)).inc()
            self._attempt(channel_id, _Final(final.command, time.monotonic() + self.retry_for))
        return True

    def drop(self, channel_id: str) -> None:
        """Stop retrying without a word (another process took the app name)."""
        self._forget(channel_id)

    # --- plumbing -------------------------------------------------------------

    def _attempt(self, channel_id: str, final: _Final) -> None:
        final.tries += 1
        command = final.command
        try:
            if isinstance(command, Hangup):
                self._rest.hangup(channel_id)
            else:
                self._rest.continue_in_dialplan(channel_id, command.target)
        except ChannelNotFound:
            pass  # gone already, or out of the app: what we wanted
        except AriError as error:
            self._failed(channel_id, final, error)
            return
        if self._forget(channel_id) is not None:  # it had failed before
            log.info("event=%s_done channel=%s tries=%d", _name(command), channel_id, final.tries)

    def _failed(self, channel_id: str, final: _Final, error: AriError) -> None:
        with self._lock:
            self._finals[channel_id] = final
        what = _name(final.command)
        now = time.monotonic()
        if isinstance(error, AriUnavailable) and now < final.deadline:
            delay = min(final.backoff.next_delay(), final.deadline - now)
            final.timer = self._timers.schedule(
                delay, lambda: self._submit(channel_id, RetryFinal())
            )
            # One warning per channel: the first failure, unless already reported stuck.
            first = final.tries == 1 and channel_id not in self._reported
            level = logging.WARNING if first else logging.DEBUG
            log.log(
                level,
                "event=%s_failed channel=%s tries=%d error=%r (retrying for up to %.0f s)",
                what,
                channel_id,
                final.tries,
                str(error),
                self.retry_for,
            )
            return
        final.stuck = True
        if channel_id in self._reported:
            log.debug("event=channel_stuck channel=%s command=%s again", channel_id, what)
            return
        self._reported[channel_id] = None
        while len(self._reported) > _REPORTED_MEMORY:
            self._reported.popitem(last=False)
        self._metrics.stuck_channels.inc()
        log.error(
            "event=channel_stuck channel=%s command=%s tries=%d error=%r"
            " (the caller may be parked in silence; retried every sweep while in the app)",
            channel_id,
            what,
            final.tries,
            str(error),
        )

    def _forget(self, channel_id: str) -> _Final | None:
        with self._lock:
            final = self._finals.pop(channel_id, None)
        if final is not None and final.timer is not None:
            final.timer.cancel()
        return final
