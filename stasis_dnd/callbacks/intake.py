"""The callback service the calls use: store a request durably, then deliver it
to the CRM in the background until the CRM has it or it is too old.

    service = CallbackService(settings.crm, settings.outbox)
    service.start()                      # delivers what a previous run left pending
    result = service.request("+79001234567", channel_id)   # on a worker thread
    if result.ok: ... promise a callback ...
    service.stop(timeout=10)

`request()` returns once the request is committed to the outbox; only then
may the caller hear the confirmation. If the outbox cannot be written (disk
full, read-only, locked), or the write has not finished within `[outbox]
write_timeout` (a hung disk), the CRM is tried at once with a short timeout;
if that fails too the result is `failed` and the caller must not be promised.
A write that finishes after its timeout is kept and delivered as usual,
unless the direct try delivered it already (then it is marked delivered, with
the same request id: at worst the CRM sees one repeat it can recognise).

One delivery thread sends pending requests oldest first, one at a time.
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

import collections
import concurrent.futures
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from stasis_dnd.callbacks.crm import CrmClient, CrmOutcome, CrmResult
from stasis_dnd.callbacks.outbox import DEAD, DUPLICATE, PENDING, Entry, Outbox, OutboxError
from stasis_dnd.logs import mask_phone
from stasis_dnd.metrics import CallbackStats
from stasis_dnd.settings import DIRECT_CRM_TIMEOUT, CrmSettings, OutboxSettings

log = logging.getLogger("stasis_dnd")

# Result labels (also the `result` label of the callback_requests metric).
STORED = "stored"
DUPLICATE_RESULT = "duplicate"
SENT = "sent"
FAILED = "failed"

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
# The caller waits in silence during the direct try when the outbox is broken.
DIRECT_TIMEOUT = DIRECT_CRM_TIMEOUT
# Longer than any one CRM attempt (connect + read timeouts, a trickling answer).
CLAIM_LEASE = 120.0
# Real seconds between looks at the outbox when idle: notices `outbox retry`
# run by the operator in another process.
POLL_INTERVAL = 5.0
_BATCH = 100
# Delivered requests older than `[outbox] keep` are deleted at start and then
# once an hour: one indexed DELETE, cheap beside a CRM request.
PRUNE_INTERVAL = 3600.0
# Channels whose request went to the CRM directly, remembered for recovery.
_DIRECT_MEMORY = 1000


def full_jitter(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after `failures` failed tries: uniform(0, min(cap, base * 2**failures))."""
    # Computed from a count (persisted per request, or kept per queue), which is
    # why no retry library fits: they own the sleeping loop and keep state in memory.
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(failures, 62)))


class RequestResult(NamedTuple):
    """What `request()` did; a callback may be promised only when `ok`."""

    ok: bool
    result: str  # stored, duplicate, sent (directly to the CRM) or failed
    reason: str = ""


_COUNTERS = (
    "stored",
    "duplicates",
    "sent_directly",
    "failed",
    "delivered",
    "dead",
    "attempts_failed",
)


@dataclass
class _LateWrite:
    """A write that missed `write_timeout`: what the direct try made of it."""

    direct_delivered: bool | None = None  # None while the direct try runs
    entry: Entry | None = None  # the row, once the write finished after all


class CallbackService:
    """Stores callback requests and delivers them to the CRM; see the module doc."""

    def __init__(
        self,
        crm: CrmSettings,
        outbox: OutboxSettings,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        direct_timeout: float = DIRECT_TIMEOUT,
        auth_pause: float = AUTH_PAUSE,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._crm_settings = crm
        self._settings = outbox
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._direct_timeout = min(direct_timeout, crm.timeout)
        self._auth_pause = auth_pause
        self._poll = poll_interval
        self._client = CrmClient(crm)  # raises ValueError on unusable settings
        self._outbox: Outbox | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._delivering = threading.Lock()
        self._counts_lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._direct_channels: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Rows the CRM took but the outbox could not mark delivered (disk trouble).
        self._unrecorded: set[int] = set()
        # One thread writes new requests, so a hung write holds one thread, and
        # every caller's wait for it is bounded by write_timeout.
        self._writer: _Writer | None = None
        self._late: dict[str, _LateWrite] = {}
        self._late_lock = threading.Lock()
        # Consecutive CRM-wide failures, and until when the queue waits.
        self._failures = 0
        self._paused_until = 0.0
        self._auth_failed = False
        # When (by the clock) delivered requests are next pruned; 0: on the first pass.
        self._next_prune = 0.0

    # --- life cycle ---------------------------------------------------------------

    def start(self, *, deliver: bool = True) -> None:
        """Open the outbox (raises OutboxError with a one-sentence reason) and
        start delivering, pending requests first. `deliver=False` only opens it."""
        self._outbox = Outbox.open(self._settings.path)
        self._writer = _Writer("outbox-writer")
        pending = self._outbox.counts()[PENDING]
        log.info("event=outbox_opened path=%s pending=%d", self._settings.path, pending)
        if deliver:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="outbox-delivery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop delivering; pending requests stay in the outbox for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("event=outbox_stop_timeout (a CRM request is still in flight)")
            self._thread = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.close()
        self._client.close()

    @property
    def outbox(self) -> Outbox | None:
        """The open outbox, or None before `start()` and after `stop()`."""
        return self._outbox

    def wake(self) -> None:
        """Make the delivery thread look at the outbox now (e.g. after a test moved the clock)."""
        self._wake.set()

    # --- what the calls use ----------------------------------------------------------

    def request(self, phone: str, channel_id: str) -> RequestResult:
        """Store a callback request for `phone` (blocking: call from a worker thread)."""
        request_id = str(uuid.uuid4())
        outbox, writer = self._outbox, self._writer
        try:
            if outbox is None or writer is None:
                raise OutboxError("the outbox is not open")
            now, window = self._clock(), self._settings.dedupe_window
            write = writer.submit(lambda: outbox.add(phone, channel_id, request_id, now, window))
            entry = write.result(timeout=self._settings.write_timeout)
        except OutboxError as exc:
            return self._send_directly(phone, channel_id, request_id, str(exc))
        except concurrent.futures.TimeoutError:
            late = _LateWrite()
            with self._late_lock:
                self._late[request_id] = late
            write.add_done_callback(lambda done: self._late_write_done(request_id, done))
            why = f"the outbox did not finish writing within {self._settings.write_timeout:g} s"
            result = self._send_directly(phone, channel_id, request_id, why)
            self._direct_try_done(request_id, late, result.ok)
            return result
        if entry.state == DUPLICATE:
            self._count("duplicates")
            log.info(
                "event=callback_duplicate id=%d of=%s channel=%s caller=%s",
                entry.id,
                entry.duplicate_of,
                channel_id,
                mask_phone(phone),
            )
            return RequestResult(True, DUPLICATE_RESULT, f"repeats request {entry.duplicate_of}")
        self._count("stored")
        log.info(
            "event=callback_stored id=%d request_id=%s channel=%s caller=%s",
            entry.id,
            request_id,
            channel_id,
            mask_phone(phone),
        )
        self._wake.set()
        return RequestResult(True, STORED)

    def stored_for_channel(self, channel_id: str) -> bool:
        """Whether this channel's caller already has a request (after a restart)."""
        if channel_id in self._direct_channels:
            return True
        try:
            return self._outbox is not None and self._outbox.has_channel(channel_id)
        except OutboxError as exc:
            # Answering no means the caller may be asked again; a repeat is deduplicated.
            log.warning("event=outbox_read_failed channel=%s error=%r", channel_id, str(exc))
            return False

    def stats(self) -> CallbackStats:
        """Counters since start; `pending` and `dead_kept` are read from the
        outbox (-1 if it cannot be)."""
        with self._counts_lock:
            counts = {name: self._counts[name] for name in _COUNTERS}
        try:
            held = self._outbox.counts() if self._outbox else {PENDING: 0, DEAD: 0}
        except OutboxError:
            held = {PENDING: -1, DEAD: -1}
        return CallbackStats(
            **counts,
            pending=held[PENDING],
            dead_kept=held[DEAD],
            bad_credentials=self._auth_failed,
        )

    def _send_directly(
        self, phone: str, channel_id: str, request_id: str, reason: str
    ) -> RequestResult:
        log.error(
            "event=outbox_write_failed channel=%s caller=%s error=%r (trying the CRM directly)",
            channel_id,
            mask_phone(phone),
            reason,
        )
        # Its own session: this runs on a worker thread, beside the delivery thread.
        client = CrmClient(self._crm_settings, timeout=self._direct_timeout)
        try:
            result = client.send(phone, request_id)
        finally:
            client.close()
        if result.delivered:
            self._count("sent_directly")
            with self._counts_lock:
                self._direct_channels[channel_id] = None
                while len(self._direct_channels) > _DIRECT_MEMORY:
                    self._direct_channels.popitem(last=False)
            log.warning(
                "event=callback_sent_directly request_id=%s channel=%s caller=%s",
                request_id,
                channel_id,
                mask_phone(phone),
            )
            return RequestResult(True, SENT, f"outbox: {reason}")
        self._count("failed")
        log.critical(
            "event=callback_not_stored channel=%s caller=%s outbox=%r crm=%r"
            " (the caller is told sorry, no callback is promised)",
            channel_id,
            mask_phone(phone),
            reason,
            str(result),
        )
        return RequestResult(False, FAILED, f"{reason}; CRM: {result}")

    def _direct_try_done(self, request_id: str, late: _LateWrite, delivered: bool) -> None:
        with self._late_lock:
            late.direct_delivered = delivered
            entry = late.entry
            if entry is not None:
                del self._late[request_id]
        if entry is not None:
            self._settle_late(entry, delivered)

    def _late_write_done(self, request_id: str, write: concurrent.futures.Future[Entry]) -> None:
        """On the writer thread: a write that missed its timeout has finished."""
        try:
            entry = write.result()
        except Exception as exc:  # OutboxError, or the writer shut down before it ran
            with self._late_lock:
                self._late.pop(request_id, None)
            log.debug("event=late_write_failed request_id=%s error=%r", request_id, str(exc))
            return
        with self._late_lock:
            late = self._late.get(request_id)
            if late is None:
                return
            late.entry = entry
            delivered = late.direct_delivered
            if delivered is not None:
                del self._late[request_id]
        if delivered is not None:
            self._settle_late(entry, delivered)

    def _settle_late(self, entry: Entry, delivered: bool) -> None:
        outbox = self._outbox
        if delivered and entry.state == PENDING and outbox is not None:
            try:
                outbox.mark_delivered(entry.id, self._clock())
            except OutboxError as exc:
                log.warning("event=outbox_write_failed id=%d error=%r", entry.id, str(exc))
        log.warning(
            "event=callback_stored_late id=%d request_id=%s caller=%s %s",
            entry.id,
            entry.request_id,
            mask_phone(entry.phone),
            "(already sent directly)" if delivered else "(will be delivered)",
        )
        self._wake.set()

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n

    # --- delivery -----------------------------------------------------------------------

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
            self._wake.wait(min(max(delay, 0.0), self._poll))

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
            due = outbox.due(now, _BATCH, max_wait=REQUEST_CAP)
            for entry in due:
                if self._stopping.is_set():
                    return 0.0
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
            return self._poll if next_due is None else max(0.0, next_due - self._clock())

    def _dead(self, entry: Entry, now: float) -> None:
        self._count("dead")
        log.critical(
            "event=callback_dead id=%d request_id=%s caller=%s attempts=%d age=%.0fs error=%r"
            " (no callback will be filed; `stasis-dnd outbox retry %d` sends it again)",
            entry.id,
            entry.request_id,
            mask_phone(entry.phone),
            entry.attempts,
            now - entry.age_from,
            entry.last_error,
            entry.id,
        )

    def _prune(self, outbox: Outbox, now: float) -> None:
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

    def _deliver(self, outbox: Outbox, entry: Entry) -> float | None:
        """Send one request; return how long the whole queue must wait, or None."""
        if entry.id in self._unrecorded:
            # The CRM has it; only the outbox failed to take note: do not send it again.
            outbox.mark_delivered(entry.id, self._clock())
            self._unrecorded.discard(entry.id)
            return None
        # Two instances may share one outbox file (one replaced by a manual run
        # waits for the app name): only the one that claims a row sends it. A
        # claim outlives a process that dies mid-send by CLAIM_LEASE at most.
        try:
            if not outbox.claim(entry.id, entry.next_attempt_at, self._clock() + CLAIM_LEASE):
                return None
        except OutboxError:
            pass  # a disk that takes no writes must not keep the CRM from getting it
        result = self._client.send(entry.phone, entry.request_id)
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
            wait = full_jitter(self._failures, RETRY_BASE, RETRY_CAP, self._rng)
            self._failures += 1
            self._paused_until = now + wait
            log.warning(
                "event=crm_unavailable url=%s error=%r tries=%d retry_in=%.1fs",
                self._client.url,
                str(result),
                self._failures,
                wait,
            )
        # Not counted as the request's attempt: it says nothing about this request.
        outbox.mark_failed(entry.id, str(result), entry.next_attempt_at, counted=False)
        self._count("attempts_failed")
        return wait

    def _request_failed(self, outbox: Outbox, entry: Entry, error: str, now: float) -> None:
        """This request backs off on its own attempts; the others go on."""
        delay = full_jitter(entry.attempts, REQUEST_BASE, REQUEST_CAP, self._rng)
        log.warning(
            "event=crm_request_failed id=%d request_id=%s caller=%s attempts=%d"
            " retry_in=%.0fs error=%r",
            entry.id,
            entry.request_id,
            mask_phone(str(entry.phone)),
            entry.attempts + 1,
            delay,
            error,
        )
        outbox.mark_failed(entry.id, error, now + delay)
        self._count("attempts_failed")

    def _crashed(self, outbox: Outbox, entry: Entry, exc: Exception) -> None:
        """A bug while delivering one request: log it, count it as that
        request's failed attempt (so it backs off and can die), go on."""
        log.error("event=delivery_bug id=%d error=%r", entry.id, str(exc), exc_info=True)
        self._request_failed(outbox, entry, f"internal error: {type(exc).__name__}", self._clock())

    def _delivered(self, outbox: Outbox, entry: Entry, now: float) -> None:
        self._count("delivered")
        if self._failures or self._auth_failed:
            log.info("event=crm_recovered failed_tries=%d", self._failures)
        self._failures = 0
        self._auth_failed = False
        log.info(
            "event=callback_delivered id=%d request_id=%s caller=%s attempts=%d waited=%.1fs",
            entry.id,
            entry.request_id,
            mask_phone(entry.phone),
            entry.attempts + 1,
            now - entry.created_at,
        )
        self._unrecorded.add(entry.id)
        outbox.mark_delivered(entry.id, now)
        self._unrecorded.discard(entry.id)

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


class _Writer:
    """One daemon thread that runs outbox writes in order. Not a
    ThreadPoolExecutor: that joins its threads at exit, and a write hung on
    a dead disk must not keep the process from exiting."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, write: Callable[[], Entry]) -> concurrent.futures.Future[Entry]:
        future: concurrent.futures.Future[Entry] = concurrent.futures.Future()
        self._jobs.put((future, write))
        return future

    def shutdown(self) -> None:
        """Stop after the writes already submitted (later ones never run)."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, write = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(write())
            except BaseException as exc:  # handed to whoever waits for the write
                future.set_exception(exc)


_Job = tuple["concurrent.futures.Future[Entry]", Callable[[], Entry]]
