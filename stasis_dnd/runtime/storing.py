"""Callback requests stored off the call's worker, on a pool of their own: a
disk that hangs delays only the callers who pressed the key, and each answer
comes back to its call through the dispatcher as `CallbackStored` (with
`already_requested` when the number already had a request within the dedupe
window) or `CallbackNotStored`. A request that went to the CRM directly (the outbox
could not store it) is marked on the channel (`STASIS_DND_CALLBACK`), so a
recovery after a crash, and the dialplan's fallback, know the caller is served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from stasis_dnd.ari.rest import AriError, AriRest
from stasis_dnd.callbacks.intake import DUPLICATE_RESULT, SENT
from stasis_dnd.core import CallbackNotStored, CallbackStored, Event
from stasis_dnd.metrics import Metrics
from stasis_dnd.runtime.dispatch import Dispatcher

log = logging.getLogger("stasis_dnd")

# Set on a channel whose request went to the CRM directly: recovery and the
# dialplan's fallback read it (the outbox, which would say so, was broken).
SENT_VARIABLE = "STASIS_DND_CALLBACK"
# What a storing thread gets: the number to call, the caller's own, the facts.
_Request = tuple[str, str, tuple[tuple[str, str], ...]]


class CallbackStore(Protocol):
    """What the calls need of the outbox (`callbacks.intake.CallbackService`)."""

    def request(
        self, phone: str, channel_id: str, caller_id: str, context: tuple[tuple[str, str], ...]
    ) -> tuple[bool, str, str]:
        """Store a request to call `phone` (`caller_id`: the caller's own number
        when it is another one, else ""; `context`: facts about the call for
        the CRM): (promise may be made, result label, reason)."""
        ...

    def stored_for_channel(self, channel_id: str) -> bool: ...


class Storing:
    """The storing pool; `request` returns at once."""

    def __init__(
        self,
        *,
        rest: AriRest,
        store: CallbackStore,
        submit: Callable[[str, tuple[float, int, Event]], None],
        metrics: Metrics,
        workers: int,
    ) -> None:
        self._rest = rest
        self._store = store
        self._submit = submit
        self._metrics = metrics
        self._pool: Dispatcher[_Request] = Dispatcher(
            self._store_request, workers=workers, name="store"
        )

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        # Daemon threads: a store hung on a dead disk must not keep the process alive.
        self._pool.stop(timeout=0.5)

    def request(
        self,
        channel_id: str,
        phone: str,
        caller_id: str,
        context: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Store a request for this channel's caller; the answer comes as an event."""
        self._pool.submit(channel_id, (phone, caller_id, context))

    def _store_request(self, channel_id: str, request: _Request) -> None:
        """On a storing thread: store the request, tell the call how it went."""
        phone, caller_id, context = request
        try:
            ok, result, reason = self._store.request(phone, channel_id, caller_id, context)
        except Exception as error:  # a bug must not leave the caller waiting in silence
            log.exception("event=store_error channel=%s", channel_id)
            ok, result, reason = False, "failed", f"internal error: {error!r}"
        self._metrics.callback_requests.labels(result).inc()
        if result == SENT:
            try:
                self._rest.set_variable(channel_id, SENT_VARIABLE, "sent")
            except AriError as error:
                # Only a crash before the call ends would need it: not worth failing for.
                log.warning("event=mark_sent_failed channel=%s error=%r", channel_id, str(error))
        # A failure was logged by the callback service already, at critical level.
        event: Event = CallbackNotStored(reason)
        if ok:
            # A repeat within the dedupe window: the caller hears "already registered".
            event = CallbackStored(already_requested=result == DUPLICATE_RESULT)
        self._submit(channel_id, (time.monotonic(), 0, event))
