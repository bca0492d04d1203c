"""Intake: the callback service the calls use. A worker stores a request
durably (or sends it directly), then `callbacks.delivery` files it with the
CRM in the background until the CRM has it or it is too old.

    service = CallbackService(settings.crm, settings.outbox)
    service.start()                      # delivers what a previous run left pending
    result = service.request("+79001234567", channel_id, caller_id)  # on a worker thread
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

Writes go through one writer thread (`_Writer`), so a hung disk holds that
thread only and every caller's wait for it is bounded.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from stasis_dnd.callbacks.crm import CrmClient, check_settings
from stasis_dnd.callbacks.delivery import AUTH_PAUSE, POLL_INTERVAL, Delivery, caller_fields
from stasis_dnd.callbacks.outbox import DEAD, DUPLICATE, PENDING, Entry, OutboxError, profile_of
from stasis_dnd.callbacks.store import OutboxStore, describe, open_outbox
from stasis_dnd.metrics import CallbackStats
from stasis_dnd.settings import DEFAULT_PROFILE, DIRECT_CRM_TIMEOUT, CrmSettings, OutboxSettings

log = logging.getLogger("stasis_dnd")

# Result labels (also the `result` label of the callback_requests metric).
STORED = "stored"
DUPLICATE_RESULT = "duplicate"
SENT = "sent"
FAILED = "failed"

# The caller waits in silence during the direct try when the outbox is broken.
DIRECT_TIMEOUT = DIRECT_CRM_TIMEOUT
# Channels whose request went to the CRM directly, remembered for recovery.
_DIRECT_MEMORY = 1000


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
        profiles: Mapping[str, CrmSettings] | None = None,
    ) -> None:
        self._crm_settings = crm
        # Each named profile's [crm] settings: what is sent for its requests.
        self._profiles = dict(profiles or {})
        for name, shape in self._profiles.items():
            try:
                check_settings(shape)
            except ValueError as error:
                # pragma: no mutate start, each message names [crm] once: any count alike
                raise ValueError(str(error).replace("[crm]", f"[profile:{name}]", 1)) from None
                # pragma: no mutate end
        self._unknown_profiles: set[str] = set()
        self._settings = outbox
        self._clock = clock
        self._direct_timeout = min(direct_timeout, crm.timeout)
        self._client = CrmClient(crm)  # raises ValueError on unusable settings
        self._outbox: OutboxStore | None = None
        self._counts_lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._direct_channels: collections.OrderedDict[str, None] = collections.OrderedDict()
        # One thread writes new requests, so a hung write holds one thread, and
        # every caller's wait for it is bounded by write_timeout.
        self._writer: _Writer | None = None
        self._late: dict[str, _LateWrite] = {}
        self._late_lock = threading.Lock()
        self._delivery = Delivery(
            crm,
            outbox,
            self._client,
            count=self._count,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter, not security
            auth_pause=auth_pause,
            poll_interval=poll_interval,
            held=self.held,
            shape=self.shape,
        )

    # --- life cycle ---------------------------------------------------------------

    def start(self, *, deliver: bool = True) -> None:
        """Open the outbox (raises OutboxError with a one-sentence reason) and
        start delivering, pending requests first. `deliver=False` only opens it."""
        self._outbox = open_outbox(self._settings)
        self._writer = _Writer("outbox-writer")
        pending = self._outbox.counts()[PENDING]
        log.info("event=outbox_opened path=%s pending=%d", describe(self._settings), pending)
        self._delivery.start(self._outbox, thread=deliver)

    def stop(self, timeout: float = 10.0) -> None:  # pragma: no mutate: any few seconds
        """Stop delivering; pending requests stay in the outbox for the next start."""
        self._delivery.stop(timeout)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.close()
        self._client.close()

    @property
    def outbox(self) -> OutboxStore | None:
        """The open outbox, or None before `start()` and after `stop()`."""
        return self._outbox

    def wake(self) -> None:
        """Make the delivery thread look at the outbox now (e.g. after a test moved the clock)."""
        self._delivery.wake()

    def deliver_due(self) -> float:
        """One delivery pass in this thread (tests without the delivery thread)."""
        return self._delivery.deliver_due()

    # --- what the calls use ----------------------------------------------------------

    def request(
        self,
        phone: str,
        channel_id: str,
        caller_id: str = "",
        context: tuple[tuple[str, str], ...] = (),
    ) -> RequestResult:
        """Store a callback request for `phone` (blocking: call from a worker
        thread). `caller_id`: the caller's own number when it is not `phone`,
        else "". `context`: facts about the call for the CRM; the time of the
        request (`requested_at`) is added here. A repeat is one for the same
        `phone` within the dedupe window."""
        request_id = str(uuid.uuid4())
        now = self._clock()
        context = (*context, ("requested_at", _local_time(now)))
        outbox, writer = self._outbox, self._writer
        # Held from delivery until we know whether the direct try has sent it:
        # a write that commits just as its wait times out must not go out twice.
        late = _LateWrite()
        with self._late_lock:
            self._late[request_id] = late
        try:
            if outbox is None or writer is None:  # pragma: no mutate: start and stop set both
                raise OutboxError("the outbox is not open")
            window = self._settings.dedupe_window
            write = writer.submit(
                lambda: outbox.add(
                    phone,
                    channel_id,
                    request_id,
                    now,
                    window,
                    caller_id=caller_id,
                    context=context,
                )
            )
            entry = write.result(timeout=self._settings.write_timeout)
        except OutboxError as exc:
            self._forget_late(request_id)
            return self._send_directly(
                phone, caller_id, channel_id, request_id, str(exc), context=context
            )
        except concurrent.futures.TimeoutError:
            write.add_done_callback(lambda done: self._late_write_done(request_id, done))
            why = f"the outbox did not finish writing within {self._settings.write_timeout:g} s"
            result = self._send_directly(
                phone, caller_id, channel_id, request_id, why, context=context
            )
            self._direct_try_done(request_id, late, result.ok)
            return result
        self._forget_late(request_id)
        if entry.state == DUPLICATE:
            self._count("duplicates")
            log.info(
                "event=callback_duplicate id=%d of=%s channel=%s %s",
                entry.id,
                entry.duplicate_of,
                channel_id,
                caller_fields(phone, caller_id),
            )
            return RequestResult(True, DUPLICATE_RESULT, f"repeats request {entry.duplicate_of}")
        self._count("stored")
        log.info(
            "event=callback_stored id=%d request_id=%s channel=%s %s",
            entry.id,
            request_id,
            channel_id,
            caller_fields(phone, caller_id),
        )
        self._delivery.wake()
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
            bad_credentials=self._delivery.bad_credentials,
        )

    def _send_directly(
        self,
        phone: str,
        caller_id: str,
        channel_id: str,
        request_id: str,
        reason: str,
        *,
        context: tuple[tuple[str, str], ...],
    ) -> RequestResult:
        who = caller_fields(phone, caller_id)
        log.error(
            "event=outbox_write_failed channel=%s %s error=%r (trying the CRM directly)",
            channel_id,
            who,
            reason,
        )
        # Its own session: this runs on a worker thread, beside the delivery thread.
        client = CrmClient(self._crm_settings, timeout=self._direct_timeout)
        # The client's own settings are [crm] too: no shape sends the same.
        shape = self._profiles.get(profile_of(context), self._crm_settings)  # pragma: no mutate
        try:
            result = client.send(
                phone, request_id, caller_id=caller_id, context=context, shape=shape
            )
        finally:
            client.close()
        if result.delivered:
            self._count("sent_directly")
            with self._counts_lock:
                self._direct_channels[channel_id] = None  # pragma: no mutate: only the key is read
                while len(self._direct_channels) > _DIRECT_MEMORY:
                    self._direct_channels.popitem(last=False)  # pragma: no mutate: None too
            log.warning(
                "event=callback_sent_directly request_id=%s channel=%s %s",
                request_id,
                channel_id,
                who,
            )
            return RequestResult(True, SENT, f"outbox: {reason}")
        self._count("failed")
        log.critical(
            "event=callback_not_stored channel=%s %s outbox=%r crm=%r"
            " (the caller is told sorry, no callback is promised)",
            channel_id,
            who,
            reason,
            str(result),
        )
        return RequestResult(False, FAILED, f"{reason}; CRM: {result}")

    def shape(self, entry: Entry) -> CrmSettings:
        """The [crm] settings a stored request is sent with: its profile's. A
        profile no longer in the config: the default's, with one WARNING."""
        name = entry.profile
        if name == DEFAULT_PROFILE:
            return self._crm_settings
        found = self._profiles.get(name)
        if found is None:
            with self._counts_lock:
                first = name not in self._unknown_profiles
                self._unknown_profiles.add(name)
            if first:
                log.warning(
                    "event=outbox_unknown_profile id=%d profile=%r (no such profile in the"
                    " config any more: sent with [crm] as it is)",
                    entry.id,
                    name,
                )
            return self._crm_settings
        return found

    def held(self, request_id: str) -> bool:
        """Whether delivery must leave this request alone for now: its write was
        late and the direct try that may have sent it is still running."""
        with self._late_lock:
            late = self._late.get(request_id)
            return late is not None and late.direct_delivered is None

    def _forget_late(self, request_id: str) -> None:
        with self._late_lock:
            self._late.pop(request_id, None)  # pragma: no mutate: the request's own, always there

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
                # pragma: no mutate start, any pop alike: only a settled direct try removes it
                self._late.pop(request_id, None)
                # pragma: no mutate end
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
            "event=callback_stored_late id=%d request_id=%s %s %s",
            entry.id,
            entry.request_id,
            caller_fields(entry.phone, entry.caller_id),
            "(already sent directly)" if delivered else "(will be delivered)",
        )
        self._delivery.wake()

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n


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
                continue  # pragma: no mutate: no write is ever cancelled
            try:
                future.set_result(write())
            except BaseException as exc:  # handed to whoever waits for the write
                future.set_exception(exc)


_Job = tuple["concurrent.futures.Future[Entry]", Callable[[], Entry]]


def _local_time(when: float) -> str:
    """ISO 8601 in the machine's time zone, with its offset: 2026-12-01T15:04:05+03:00."""
    return datetime.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")
