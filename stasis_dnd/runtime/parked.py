"""The channels parked in the app, as Asterisk lists them (`GET
/applications/{app}`): taken over after every connect, and looked at on the
sweep thread, which also checks that Asterisk still knows the app.

Recovery asks again after a failure, with back-off, for as long as the
connection it was started for is current (same connection, app name held,
not stopping): a 500 right after a reconnect must not leave the parked
callers in silence.

Once the app is listed (so Asterisk has registered it), recovery also asks
Asterisk to send only the event types the app handles (`EVENT_TYPES`), on
every connect. An Asterisk that refuses (older than 18: 404, 405, 400) is
said once at INFO and the app goes on with every event, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stasis_dnd.ari.rest import AriError, AriRest
from stasis_dnd.ari.translate import HANDLED_TYPES
from stasis_dnd.backoff import Backoff
from stasis_dnd.guard import ThreadErrors
from stasis_dnd.runtime.registry import CallItem, CallRegistry, Recover

log = logging.getLogger("stasis_dnd")

# Right after connecting, how often and how patiently a 404 for the app is
# asked again before it counts as lost.
_REGISTRATION_TRIES = 3
_REGISTRATION_WAIT = 0.5
# Asking for the parked channels again after another error: 0.5 s, then up to 1, 2, 4, 5 s.
_RECOVERY_BASE = 0.5
_RECOVERY_CAP = 5.0
# What the app asks Asterisk to send it: the rest it would only parse and drop.
EVENT_TYPES = HANDLED_TYPES | {"ApplicationReplaced"}


class Parked:
    """Recovery and the sweep's look at the app; see the module docstring."""

    def __init__(
        self,
        *,
        app: str,
        rest: AriRest,
        calls: CallRegistry,
        submit: Callable[[str, CallItem], None],
        errors: ThreadErrors,
        stop: threading.Event,
        current: Callable[[int], bool],
        not_registered: Callable[[int], None],
    ) -> None:
        """`current(generation)`: that connection is still the one in use;
        `not_registered(generation)`: Asterisk does not know the app."""
        self._app = app
        self._rest = rest
        self._calls = calls
        self._submit = submit
        self._errors = errors
        self._stop = stop
        self._current = current
        self._not_registered = not_registered
        self._filter_refusal_said = False

    def recover(self, generation: int) -> None:
        """After connect number `generation` (its own thread): take over every
        channel Asterisk lists in the app, and tell the calls not listed."""
        backoff = Backoff(_RECOVERY_BASE, _RECOVERY_CAP)
        not_found = 0
        while self._current(generation):
            try:
                in_app = self._listed()
            except AriError as error:
                if error.status == 404:
                    not_found += 1
                    if not_found >= _REGISTRATION_TRIES:
                        self._not_registered(generation)
                        return
                    # Asterisk registers the app just after the WebSocket upgrade: a
                    # request quick enough can arrive before it.
                    delay = _REGISTRATION_WAIT * not_found
                else:
                    level = logging.WARNING if backoff.failures == 0 else logging.DEBUG
                    log.log(level, "event=recovery_failed error=%r (retrying)", str(error))
                    delay = backoff.next_delay()
            except Exception as error:
                self._errors.caught("recovery", error)
                delay = backoff.next_delay()
            else:
                self._take_over(in_app, generation)
                self._filter_events(generation)
                return
            if self._stop.wait(delay):
                return

    def _filter_events(self, generation: int) -> None:
        if not self._current(generation):
            return
        try:
            self._rest.filter_events(self._app, EVENT_TYPES)
        except AriError as error:
            if not self._filter_refusal_said:
                self._filter_refusal_said = True
                log.info("event=event_filter_refused error=%r (receiving every event)", str(error))
            return
        log.debug("event=event_filter_set types=%d", len(EVENT_TYPES))

    def check(self, generation: int, *, sweep: bool) -> bool:
        """The registration check, and the sweep if `sweep`; True if it swept."""
        try:
            in_app = self._listed()
        except AriError as error:
            if error.status == 404:
                self._not_registered(generation)
            else:
                log.warning("event=sweep_failed error=%r", str(error))
            return False
        if not sweep or not self._current(generation):
            return False
        self._calls.sweep(in_app, generation)
        return True

    def _listed(self) -> set[str]:
        listed = self._rest.application(self._app).get("channel_ids", [])
        if not isinstance(listed, list):
            raise ValueError(f"channel_ids of the app is a {type(listed).__name__}, not a list")
        return {c for c in listed if isinstance(c, str)}

    def _take_over(self, in_app: set[str], generation: int) -> None:
        if not self._current(generation):
            return
        now = time.monotonic()
        for channel_id in in_app | set(self._calls.channel_ids()):
            self._submit(channel_id, (now, generation, Recover(channel_id in in_app, generation)))
        if in_app:
            log.info("event=recovering channels=%d", len(in_app))
