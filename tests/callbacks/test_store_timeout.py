"""A write to the outbox that hangs (failing disk, NFS, a held lock): the caller
waits at most `[outbox] write_timeout`, the CRM is tried directly, and the
late write is settled so nothing is promised falsely or sent twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from callbacks_kit import hang_writes

from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.callbacks.outbox import DELIVERED, PENDING, Entry, Outbox
from stasis_dnd.settings import CrmSettings, OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import slow

PASSWORD = "Kx9#secret-pw"
A, B = "+79000000001", "+79000000002"


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator("dnd", PASSWORD) as emulator:
        yield emulator
        emulator.check()


@pytest.fixture
def service(crm: CrmEmulator, tmp_path: Path) -> Iterator[CallbackService]:
    made = CallbackService(
        CrmSettings(url=crm.url, username="dnd", password=PASSWORD, timeout=2.0),
        OutboxSettings(path=str(tmp_path / "outbox.sqlite3"), write_timeout=0.2),
    )
    made.start(deliver=False)
    yield made
    made.stop(timeout=5)


def make_service(
    crm: CrmEmulator, tmp_path: Path, *, timeout: float = 2.0, **options: Any
) -> CallbackService:
    """A service on the test's outbox file; `options` go to OutboxSettings or the service."""
    outbox = {k: options.pop(k) for k in list(options) if k in ("write_timeout",)}
    return CallbackService(
        CrmSettings(url=crm.url, username="dnd", password=PASSWORD, timeout=timeout),
        OutboxSettings(path=str(tmp_path / "outbox.sqlite3"), **outbox),
        **options,
    )


def rows(service: CallbackService) -> list[tuple[str, str, str]]:
    assert service.outbox is not None
    return [(e.phone, e.state, e.request_id) for e in service.outbox.entries()]


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(1000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not met in time")


def test_a_hung_write_goes_to_the_crm_directly_and_the_late_row_is_not_sent_again(
    service: CallbackService, crm: CrmEmulator
) -> None:
    release = hang_writes(service)
    result = service.request(A, "chan-1")
    assert (result.ok, result.result) == (True, "sent")
    assert "did not finish writing within 0.2 s" in result.reason
    [sent] = crm.delivered()
    release.set()  # the disk comes back: the row is written after all
    wait_until(lambda: [s for _, s, _ in rows(service)] == [DELIVERED])
    assert rows(service) == [(A, DELIVERED, sent.request_id)]  # the same request, not a new one
    service.deliver_due()
    assert len(crm.requests) == 1


def test_a_hung_write_sends_and_later_stores_the_caller_id(
    service: CallbackService, crm: CrmEmulator
) -> None:
    release = hang_writes(service)
    assert service.request(A, "chan-1", B).result == "sent"
    [sent] = crm.delivered()
    assert (sent.param("aon"), sent.param("callerId")) == (A, B)
    release.set()
    wait_until(lambda: [s for _, s, _ in rows(service)] == [DELIVERED])
    assert service.outbox is not None
    assert service.outbox.entries()[0].caller_id == B


def test_a_hung_write_with_the_crm_down_is_not_promised_but_delivered_later(
    service: CallbackService, crm: CrmEmulator
) -> None:
    release = hang_writes(service)
    crm.outage()
    result = service.request(A, "chan-1")
    assert (result.ok, result.result) == (False, "failed")  # the caller hears sorry
    crm.restore()
    release.set()
    wait_until(lambda: [s for _, s, _ in rows(service)] == [PENDING])
    # Stored after all: the caller asked for a callback and gets one.
    service.deliver_due()
    assert crm.delivered_phones() == [A]


def test_a_write_that_finishes_during_the_direct_try_is_marked_delivered(
    service: CallbackService, crm: CrmEmulator
) -> None:
    release = hang_writes(service)
    crm.script(slow(0.5))  # the direct try is still waiting for the CRM ...
    threading.Timer(0.3, release.set).start()  # ... when the write finishes
    assert service.request(A, "chan-1").result == "sent"
    wait_until(lambda: [s for _, s, _ in rows(service)] == [DELIVERED])
    service.deliver_due()
    assert len(crm.requests) == 1


def test_writes_after_a_hung_one_wait_behind_it_each_bounded(
    service: CallbackService, crm: CrmEmulator
) -> None:
    release = hang_writes(service)
    assert service.request(A, "chan-1").result == "sent"
    assert service.request(B, "chan-2").result == "sent"  # queued behind A's write: bounded too
    release.set()
    wait_until(lambda: [s for _, s, _ in rows(service)] == [DELIVERED, DELIVERED])
    service.deliver_due()
    assert sorted(crm.delivered_phones()) == [A, B]
    assert len(crm.requests) == 2


def test_a_quick_write_is_stored_not_sent_directly(
    service: CallbackService, crm: CrmEmulator
) -> None:
    assert service.request(A, "chan-1").result == "stored"
    assert crm.requests == []
    assert [(p, s) for p, s, _ in rows(service)] == [(A, PENDING)]


def test_two_services_on_one_outbox_file_send_a_request_once(
    service: CallbackService, crm: CrmEmulator, tmp_path: Path
) -> None:
    # A service replaced by a manual run keeps running beside it on the same file.
    other = CallbackService(
        CrmSettings(url=crm.url, username="dnd", password=PASSWORD, timeout=2.0),
        OutboxSettings(path=str(tmp_path / "outbox.sqlite3")),
    )
    other.start(deliver=False)
    try:
        assert service.request(A, "chan-1").result == "stored"
        assert service.outbox is not None and other.outbox is not None
        [seen] = other.outbox.due(time.time() + 1)
        # The other instance read the row as due, then this one claimed and sent it ...
        service.deliver_due()
        assert other.outbox.claim(seen.id, seen.next_attempt_at, time.time() + 60) is False
        other.deliver_due()  # ... so the other one finds nothing to send
        assert len(crm.requests) == 1
    finally:
        other.stop(timeout=5)


def test_a_claim_left_by_a_killed_process_expires_after_its_lease(
    service: CallbackService, crm: CrmEmulator, tmp_path: Path
) -> None:
    assert service.request(A, "chan-1").result == "stored"
    assert service.outbox is not None
    [entry] = service.outbox.entries()
    # Claimed for one attempt, then the process was killed.
    assert service.outbox.claim(entry.id, entry.next_attempt_at, time.time() + 0.5)
    service.deliver_due()
    assert crm.requests == []  # still claimed
    restarted = make_service(crm, tmp_path)
    restarted.start(deliver=True)
    try:
        assert crm.wait_for(lambda c: c.delivered_phones() == [A])
    finally:
        restarted.stop(timeout=5)


def test_a_second_instance_starting_does_not_take_a_live_claim(
    crm: CrmEmulator, tmp_path: Path
) -> None:
    first = make_service(crm, tmp_path, timeout=5.0)
    first.start(deliver=True)
    second = make_service(crm, tmp_path, timeout=5.0)
    try:
        crm.script(slow(1.0))  # the first instance's send takes a second ...
        assert first.request(A, "chan-1").result == "stored"
        assert crm.wait_for(lambda c: len(c.requests) == 1)
        second.start(deliver=True)  # ... while the second one starts on the same file
        wait_until(lambda: [s for _, s, _ in rows(first)] == [DELIVERED])
    finally:
        second.stop(timeout=5)
        first.stop(timeout=5)
    assert len(crm.requests) == 1  # counted after both stopped: nothing more can come


def test_a_late_write_is_not_delivered_while_its_direct_try_runs(
    crm: CrmEmulator, tmp_path: Path
) -> None:
    # A short poll stands for the wake-ups other callers' requests give the delivery thread.
    late = make_service(crm, tmp_path, timeout=5.0, write_timeout=0.2, poll_interval=0.05)
    late.start(deliver=True)
    try:
        outbox = late.outbox
        assert outbox is not None
        real_add = outbox.add

        def slow_add(*args: Any, **kwargs: Any) -> Entry:
            time.sleep(0.5)  # done 0.3 s after write_timeout, during the direct try
            return real_add(*args, **kwargs)

        outbox.add = slow_add  # type: ignore[method-assign]
        crm.script(slow(1.5))  # the direct try waits for the CRM meanwhile
        assert late.request(A, "chan-1").result == "sent"
        wait_until(lambda: [s for _, s, _ in rows(late)] == [DELIVERED])
    finally:
        late.stop(timeout=5)
    assert len(crm.requests) == 1


def test_a_write_hung_inside_sqlite_does_not_hang_reads_metrics_or_stop(
    crm: CrmEmulator, tmp_path: Path
) -> None:
    service = make_service(crm, tmp_path)
    service.start(deliver=False)
    outbox = service.outbox
    assert isinstance(outbox, Outbox)
    # A write stuck in fsync holds the connection's lock, as this does.
    outbox._lock.acquire()
    try:
        assert service.stored_for_channel("chan-1") is False  # answers, after LOCK_TIMEOUT
        assert service.stats().pending == -1
        service.stop(timeout=5)  # returns; the file is left to the process's exit
    finally:
        outbox._lock.release()
