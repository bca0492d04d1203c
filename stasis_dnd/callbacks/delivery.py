"""Delivery: one background thread files the requests stored in the outbox
with the CRM, oldest first, one at a time, until the CRM has each one or it is
too old.

When the CRM as a whole cannot take a request (no connection, TLS, 429, bad
credentials) every request waits, with exponential back-off and full jitter
(bad credentials: one try and one log line a minute); such tries are not
counted against a request. When the CRM answers one request badly (5xx, 408,
no answer in time, 3xx, 404, not JSON, `status: error`) only that request
backs off, on its own count of attempts, and the thread goes on to the next.
A request is dead-lettered (one CRITICAL line) once it is older than
`[outbox] max_age` *and* has had MIN_ATTEMPTS attempts of its own. Delivered
requests are deleted `[outbox] keep` after delivery (checked at start, then
hourly); dead ones stay until the operator retries or purges them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from stasis_dnd.backoff import Backoff, full_jitter
from stasis_dnd.callbacks.crm import CrmClient, CrmOutcome, CrmResult
from stasis_dnd.callbacks.outbox import Entry, OutboxError
from stasis_dnd.callbacks.store import OutboxStore
from stasis_dnd.logs import mask_phone
from stasis_dnd.settings import CrmSettings, OutboxSettings

log = logging.getLogger("stasis_dnd")

# A CRM that cannot be reached is retried after up to 2 s, then 4, 8, ... but never
# more than 5 minutes apart, so callers are not kept waiting long after it is back.
RETRY_BASE = 2.0
RETRY_CAP = 300.0
# A request the CRM failed on waits alone: soon again (most such failures pass),
# then ever longer, up to an hour apart (it may fail on this request for good).
REQUEST_BASE = 5.0
REQUEST_CAP = 3600.0
# Past max_age a request dies only after this many attempts of its own: with the
# back-off above, 1.2 hours of trying on average (2.4 at most), so none dies untried.
MIN_ATTEMPTS = 12
# With a wrong login nothing can be delivered; one try (and one log line) a minute.
AUTH_PAUSE = 60.0
# A claimed request is held this much longer than the CRM timeout allows one
# attempt to take (connect, then the capped read).
CLAIM_MARGIN = 5.0
# How soon a pass looks again at a request held by its direct try (a few seconds at most).
HELD_RECHECK = 0.25
# Real seconds between looks at the outbox when idle: notices `outbox retry`
# run by the operator in another process.
POLL_INTERVAL = 5.0
_BATCH = 100
# Delivered requests older than `[outbox] keep` are deleted at start and then
# once an hour: one indexed DELETE, cheap beside a CRM request.
PRUNE_INTERVAL = 3600.0


def caller_fields(phone: str, caller_id: str) -> str:
    """The log fields naming a request's numbers, masked: `caller=` the number
    to call, then `caller_id=` the caller's own when it is another one."""
    # str(): SQLite keeps whatever type a row was written with.
    text = f"caller={mask_phone(str(phone))}"
    return f"{text} caller_id={mask_phone(str(caller_id))}" if caller_id else text


class Delivery:
    """The delivery thread of a `CallbackService`; see the module doc."""

    def __init__(
        self,
        crm: CrmSettings,
        outbox: OutboxSettings,
        client: CrmClient,
        *,
        count: Callable[[str], None],
        clock: Callable[[], float],
        rng: random.Random,
        auth_pause: float = AUTH_PAUSE,
        poll_interval: float = POLL_INTERVAL,
        held: Callable[[str], bool] = lambda request_id: False,
        shape: Callable[[Entry], CrmSettings] | None = None,
    ) -> None:
        self._crm_settings = crm
        self._settings = outbox
        self._client = client
        self._count = count
        self._clock = clock
        self._rng = rng
        self._auth_pause = auth_pause
        self._poll = poll_interval
        self._held = held
        # What is sent for a request: its profile's [crm] settings.
        self._shape = shape or (lambda entry: crm)
        self._lease = 2 * crm.timeout + CLAIM_MARGIN
        self._outbox: OutboxStore | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._delivering = threading.Lock()
        # Rows the CRM took but the outbox could not mark delivered (disk trouble).
        self._unrecorded: set[int] = set()
        # Consecutive CRM-wide failures, and until when the queue waits.
        self._crm_backoff = Backoff(RETRY_BASE, RETRY_CAP, rng)
        self._paused_until = 0.0
        self._auth_failed = False
        # When (by the clock) delivered requests are next pruned; 0: on the first pass.
        self._next_prune = 0.0

    @property
    def bad_credentials(self) -> bool:
        """True while delivery is paused because the CRM rejects the login."""
        return self._auth_failed

    def start(self, outbox: OutboxStore, *, thread: bool = True) -> None:
        """Deliver from `outbox`: in a thread of its own, or (`thread=False`)
        only when `deliver_due()` is called."""
        self._outbox = outbox
        if thread:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="outbox-delivery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread; pending requests stay in the outbox."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("event=outbox_stop_timeout (a CRM request is still in flight)")
            self._thread = None
        self._outbox = None

    def wake(self) -> None:
        """Look at the outbox now (a request was stored, or a test moved the clock)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                delay = self.deliver_due()
            except Exception as exc:  # the delivery thread must outlive any one error
                if self._stopping.is_set():
                    return
                # An OutboxError says it all in one sentence; anything else is a bug.
                bug = not isinstance(exc, OutboxError)
                log.error("event=outbox_delivery_error error=%r", str(exc), exc_info=bug)
                delay = self._poll
            # The clock may be a test's; wait in real time, at most one poll interval.
            # pragma: no mutate start, as another floor only changes real time slept
            self._wake.wait(min(max(delay, 0.0), self._poll))
            # pragma: no mutate end

    def deliver_due(self) -> float:
        """One delivery pass in this thread; return seconds until the next one is
        wanted. (The delivery thread calls it; tests without it may too.)"""
        with self._delivering:
            outbox = self._outbox
            if outbox is None:
                return self._poll
            now = self._clock()
            self._prune(outbox, now)
            for entry in outbox.expire(now, self._settings.max_age, MIN_ATTEMPTS):
                self._dead(entry, now)
            if self._paused_until - now > max(RETRY_CAP, self._auth_pause):
                self._paused_until = now  # the wall clock went back: do not stall
            if now < self._paused_until:
                return self._paused_until - now
            due = outbox.due(
                now,
                _BATCH,  # pragma: no mutate: the outbox's default limit is the same
                max_wait=REQUEST_CAP,
            )
            held = False  # pragma: no mutate: None is as false, and only tested for truth
            for entry in due:
                if self._stopping.is_set():
                    return 0.0  # pragma: no mutate: a stopping thread waits no more
                if self._held(entry.request_id):
                    held = True  # the direct try may be sending it right now
                    continue
                try:
                    wait = self._deliver(outbox, entry)
                except OutboxError:
                    raise  # the outbox itself fails: no use going on; the thread waits
                except Exception as exc:  # one bad row must not stop the others
                    self._crashed(outbox, entry, exc)
                    continue
                if wait is not None:
                    return wait
            if len(due) == _BATCH:
                return 0.0
            # Each failed request has its own next_attempt_at: wait for the earliest.
            next_due = outbox.next_due()
            wait = self._poll if next_due is None else max(0.0, next_due - self._clock())
            # A held request is due but not ours to send yet: look again soon, not at once.
            return max(wait, HELD_RECHECK) if held else wait

    def _dead(self, entry: Entry, now: float) -> None:
        self._count("dead")
        log.critical(
            "event=callback_dead id=%d request_id=%s %s attempts=%d age=%.0fs error=%r"
            " (no callback will be filed; `stasis-dnd outbox retry %d` sends it again)",
            entry.id,
            entry.request_id,
            caller_fields(entry.phone, entry.caller_id),
            entry.attempts,
            now - entry.age_from,
            entry.last_error,
            entry.id,
        )

    def _prune(self, outbox: OutboxStore, now: float) -> None:
        """Delete delivered requests older than `[outbox] keep`, once an hour."""
        keep = self._settings.keep
        # A clock set back would otherwise postpone pruning by as much.
        if keep <= 0 or (now < self._next_prune and self._next_prune - now <= PRUNE_INTERVAL):
            return
        self._next_prune = now + PRUNE_INTERVAL
        # Deduplication looks back over delivered requests: keep at least that long.
        keep = max(keep, self._settings.dedupe_window)
        try:
            deleted = outbox.prune_delivered(now - keep)
        except OutboxError as exc:
            # Not urgent: delivery goes on, and the next hour tries again.
            log.warning("event=outbox_prune_failed error=%r", str(exc))
            return
        if deleted:
            log.info("event=outbox_pruned deleted=%d older_than=%.0fs", deleted, keep)

    def _deliver(self, outbox: OutboxStore, entry: Entry) -> float | None:
        """Send one request; return how long the whole queue must wait, or None."""
        if entry.id in self._unrecorded:
            # The CRM has it; only the outbox failed to take note: do not send it again.
            outbox.mark_delivered(entry.id, self._clock())
            self._unrecorded.discard(
                entry.id
            )  # pragma: no mutate: a delivered row is not due again
            return None
        # Two instances may share one outbox file (one replaced by a manual run
        # waits for the app name): only the one that claims a row sends it. A
        # claim outlives a process that dies mid-send by `_lease` at most.
        try:
            if not outbox.claim(entry.id, entry.next_attempt_at, self._clock() + self._lease):
                return None
        except OutboxError:
            pass  # a disk that takes no writes must not keep the CRM from getting it
        result = self._client.send(
            entry.phone,
            entry.request_id,
            caller_id=entry.caller_id,
            context=entry.context,
            shape=self._shape(entry),
        )
        now = self._clock()
        if result.delivered:
            self._delivered(outbox, entry, now)
            return None
        if not result.crm_wide:
            self._request_failed(outbox, entry, str(result), now)
            return None
        # Nothing can get through: the queue waits, the request stays first in line.
        if result.outcome is CrmOutcome.BAD_CREDENTIALS:
            wait = self._pause_for_login(result, now)
        else:
            wait = self._crm_backoff.next_delay()
            self._paused_until = now + wait
            log.warning(
                "event=crm_unavailable url=%s error=%r tries=%d retry_in=%.1fs",
                self._client.url,
                str(result),
                self._crm_backoff.failures,
                wait,
            )
        # Not counted as the request's attempt: it says nothing about this request.
        outbox.mark_failed(entry.id, str(result), entry.next_attempt_at, counted=False)
        self._count("attempts_failed")
        return wait

    def _request_failed(self, outbox: OutboxStore, entry: Entry, error: str, now: float) -> None:
        """This request backs off on its own attempts; the others go on."""
        delay = full_jitter(entry.attempts, REQUEST_BASE, REQUEST_CAP, self._rng)
        log.warning(
            "event=crm_request_failed id=%d request_id=%s %s attempts=%d retry_in=%.0fs error=%r",
            entry.id,
            entry.request_id,
            caller_fields(entry.phone, entry.caller_id),
            entry.attempts + 1,
            delay,
            error,
        )
        outbox.mark_failed(entry.id, error, now + delay)
        self._count("attempts_failed")

    def _crashed(self, outbox: OutboxStore, entry: Entry, exc: Exception) -> None:
        """A bug while delivering one request: log it, count it as that
        request's failed attempt (so it backs off and can die), go on."""
        log.error("event=delivery_bug id=%d error=%r", entry.id, str(exc), exc_info=True)
        self._request_failed(outbox, entry, f"internal error: {type(exc).__name__}", self._clock())

    def _delivered(self, outbox: OutboxStore, entry: Entry, now: float) -> None:
        self._count("delivered")
        if self._crm_backoff.failures or self._auth_failed:
            log.info("event=crm_recovered failed_tries=%d", self._crm_backoff.failures)
        self._crm_backoff.reset()
        self._auth_failed = False
        log.info(
            "event=callback_delivered id=%d request_id=%s %s attempts=%d waited=%.1fs",
            entry.id,
            entry.request_id,
            caller_fields(entry.phone, entry.caller_id),
            entry.attempts + 1,
            now - entry.created_at,
        )
        self._unrecorded.add(entry.id)
        outbox.mark_delivered(entry.id, now)
        self._unrecorded.discard(entry.id)  # pragma: no mutate: a delivered row is not due again

    def _pause_for_login(self, result: CrmResult, now: float) -> float:
        self._auth_failed = True
        self._paused_until = now + self._auth_pause
        log.critical(
            "event=crm_bad_credentials url=%s username=%s error=%r"
            " (delivery paused %.0fs; fix [crm] username / password)",
            self._client.url,
            self._crm_settings.username,
            result.detail,
            self._auth_pause,
        )
        return self._auth_pause
