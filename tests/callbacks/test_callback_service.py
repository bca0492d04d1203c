"""The callback service end to end with the CRM emulator: stored first, then
delivered, across restarts, outages, bad logins and broken disks. Time is a
fake clock; nothing sleeps for a back-off."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from callbacks_kit import PASSWORD, A, B, C, FakeClock, sqlite_outbox, wait_until

from stasis_dnd.callbacks.delivery import MIN_ATTEMPTS, PRUNE_INTERVAL, REQUEST_CAP
from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.callbacks.outbox import DEAD, DELIVERED, DUPLICATE, PENDING, OutboxError
from stasis_dnd.settings import CrmSettings, OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import SERVER_ERROR

pytestmark = pytest.mark.usefixtures("fresh_crm")


def states(service: CallbackService) -> list[tuple[str, str]]:
    assert service.outbox is not None
    return [(e.phone, e.state) for e in service.outbox.entries()]


def test_stored_at_once_then_delivered_in_the_background(
    make: Callable[..., CallbackService], crm: CrmEmulator
) -> None:
    service = make(deliver=True)
    result = service.request(A, "1700000000.1")
    assert result == (True, "stored", "")
    assert result.ok
    assert crm.wait_for(lambda c: c.delivered_phones() == [A])
    wait_until(lambda: service.stats().delivered == 1)
    assert service.outbox is not None
    [entry] = service.outbox.entries()
    assert entry.state == DELIVERED
    assert crm.delivered_ids() == [entry.request_id]
    assert uuid.UUID(entry.request_id).version == 4
    assert service.stats().pending == 0


def test_killed_between_storing_and_delivering_delivers_once_after_restart(
    make: Callable[..., CallbackService], crm: CrmEmulator
) -> None:
    crashed = make(deliver=False)  # stores, but dies before any delivery
    for n, phone in enumerate((A, B, C)):
        assert crashed.request(phone, f"chan-{n}").result == "stored"
    assert crm.requests == []
    restarted = make(deliver=True)
    assert crm.wait_for(lambda c: len(c.delivered()) == 3)
    assert restarted.outbox is not None
    ids = [e.request_id for e in restarted.outbox.entries()]
    assert crm.delivered_ids() == ids  # in order, each once
    assert crm.delivered_phones() == [A, B, C]
    wait_until(lambda: restarted.stats().pending == 0)
    restarted.stop(timeout=10)
    # A third start finds nothing left to send.
    again = make(deliver=False)
    again.deliver_due()
    assert len(crm.requests) == 3


def test_repeat_within_the_window_is_not_sent_twice(
    make: Callable[..., CallbackService], crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make(dedupe_window=1800)
    assert service.request(A, "c1").result == "stored"
    clock.advance(600)
    repeat = service.request(A, "c2")
    assert repeat.ok and repeat.result == "duplicate"
    service.deliver_due()
    clock.advance(600)  # delivered recently: still a repeat
    assert service.request(A, "c3").result == "duplicate"
    service.deliver_due()
    assert crm.delivered_phones() == [A]
    assert service.stats().duplicates == 2
    assert service.stored_for_channel("c2")  # the caller was told it is stored
    clock.advance(601)  # the window (from the first request) is over
    assert service.request(A, "c4").result == "stored"
    service.deliver_due()
    assert crm.delivered_phones() == [A, A]
    assert [s for _, s in states(service)] == [DELIVERED, DUPLICATE, DUPLICATE, DELIVERED]


def test_window_zero_sends_every_request(
    make: Callable[..., CallbackService], crm: CrmEmulator
) -> None:
    service = make(dedupe_window=0)
    assert service.request(A, "c1").result == "stored"
    assert service.request(A, "c2").result == "stored"
    service.deliver_due()
    assert crm.delivered_phones() == [A, A]


def test_read_only_outbox_with_the_crm_down_fails_loudly(
    make: Callable[..., CallbackService], crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make()
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")  # as if the disk was remounted read-only
    crm.outage()
    result = service.request(A, "c1")
    assert not result.ok
    assert result.result == "failed"
    assert "readonly" in result.reason and "Connection refused" in result.reason
    assert not service.stored_for_channel("c1")
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert critical[0].getMessage().startswith("event=callback_not_stored channel=c1")
    assert service.stats().failed == 1


def test_read_only_outbox_with_the_crm_up_sends_directly(
    make: Callable[..., CallbackService], crm: CrmEmulator
) -> None:
    service = make()
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")
    result = service.request(A, "c1")
    assert (result.ok, result.result) == (True, "sent")
    assert crm.delivered_phones() == [A]
    assert crm.requests[0].request_id  # a request id even without the outbox
    assert service.stored_for_channel("c1")
    assert service.stats().sent_directly == 1


def test_full_disk_then_space_again(make: Callable[..., CallbackService], crm: CrmEmulator) -> None:
    service = make(dedupe_window=0)
    assert service.outbox is not None
    sqlite_outbox(service).pragma("max_page_count = 8")
    crm.outage()
    results = []
    for n in range(5000):
        results.append(service.request(f"+7900{n:07d}", f"chan-{n}"))
        if not results[-1].ok:
            break
    assert results[-1].result == "failed"
    assert "full" in results[-1].reason
    assert {r.result for r in results[:-1]} == {"stored"}
    sqlite_outbox(service).pragma("max_page_count = 1000000")
    crm.restore()
    service.deliver_due()
    while service.stats().pending:
        service.deliver_due()
    assert len(crm.delivered()) == len(results) - 1


def test_delivered_but_not_recorded_is_not_sent_again(
    make: Callable[..., CallbackService], crm: CrmEmulator
) -> None:
    service = make()
    service.request(A, "c1")
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")  # the disk fails after the request was stored
    with pytest.raises(OutboxError, match="mark a request delivered"):
        service.deliver_due()
    with pytest.raises(OutboxError):
        service.deliver_due()
    assert len(crm.requests) == 1
    sqlite_outbox(service).pragma("query_only = 0")
    service.deliver_due()
    assert len(crm.requests) == 1
    assert states(service) == [(A, DELIVERED)]


def test_delivery_thread_outlives_outbox_errors(
    make: Callable[..., CallbackService],
    crm: CrmEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make(deliver=True)
    crm.outage()
    service.request(A, "c1")
    wait_until(lambda: service.stats().attempts_failed >= 1)
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")
    clock.advance(3600)
    service.wake()
    wait_until(lambda: any("outbox_delivery_error" in r.getMessage() for r in caplog.records))
    sqlite_outbox(service).pragma("query_only = 0")
    crm.restore()
    clock.advance(3600)
    service.wake()
    assert crm.wait_for(lambda c: c.delivered_phones() == [A])


def test_locked_outbox_sends_directly(
    make: Callable[..., CallbackService], crm: CrmEmulator
) -> None:
    service = make()
    assert service.outbox is not None
    other = sqlite3.connect(service.outbox.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        result = service.request(A, "c1")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (result.ok, result.result) == (True, "sent")
    assert "locked" in result.reason
    assert crm.delivered_phones() == [A]


def test_delivered_requests_are_pruned_at_start_then_hourly_and_dead_ones_kept(
    make: Callable[..., CallbackService],
    crm: CrmEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make(keep=600, dedupe_window=0, max_age=3600)
    service.request(A, "c1")
    service.deliver_due()  # delivered; the first pass pruned (nothing yet)
    clock.advance(1000)
    service.deliver_due()
    assert states(service) == [(A, DELIVERED)]  # past `keep`, but pruning is hourly
    clock.advance(PRUNE_INTERVAL - 1000)
    crm.for_number(B, SERVER_ERROR)  # the CRM fails on B, every time
    service.request(B, "c2")
    service.deliver_due()
    assert states(service) == [(B, PENDING)]
    assert "event=outbox_pruned deleted=1 older_than=600s" in caplog.text
    for _ in range(MIN_ATTEMPTS):
        clock.advance(REQUEST_CAP)
        service.deliver_due()
    assert states(service) == [(B, DEAD)]  # never pruned: it is the operator's evidence
    clock.advance(100 * PRUNE_INTERVAL)
    service.deliver_due()
    assert states(service) == [(B, DEAD)]
    service.request(C, "c3")
    service.deliver_due()
    service.stop()
    # A restart prunes at once.
    clock.advance(601)
    again = make(keep=600, dedupe_window=0)
    again.deliver_due()
    assert states(again) == [(B, DEAD)]


def test_keep_zero_keeps_everything_and_keep_never_undercuts_the_dedupe_window(
    make: Callable[..., CallbackService], crm: CrmEmulator, clock: FakeClock
) -> None:
    forever = make(keep=0)
    forever.request(A, "c1")
    forever.deliver_due()
    clock.advance(10 * 365 * 86400.0)
    forever.deliver_due()
    assert states(forever) == [(A, DELIVERED)]
    forever.stop()
    short = make(keep=60, dedupe_window=1800)
    short.request(B, "c2")
    short.deliver_due()  # A is pruned at start, B delivered
    assert states(short) == [(B, DELIVERED)]
    short.stop()
    clock.advance(120)  # past `keep`, within the dedupe window
    again = make(keep=60, dedupe_window=1800)
    again.deliver_due()
    assert again.request(B, "c3").result == "duplicate"
    assert crm.delivered_phones() == [A, B]


def test_stop_keeps_pending_requests_and_later_requests_go_directly(
    make: Callable[..., CallbackService], crm: CrmEmulator, tmp_path: Path
) -> None:
    crm.outage()
    service = make(deliver=True)
    service.request(A, "c1")
    wait_until(lambda: service.stats().attempts_failed >= 1)
    service.stop(timeout=10)
    assert service.outbox is None
    crm.restore()
    late = service.request(B, "c2")
    assert (late.ok, late.result) == (True, "sent")
    assert crm.delivered_phones() == [B]
    db = sqlite3.connect(tmp_path / "var" / "outbox.sqlite3")
    assert db.execute("SELECT phone, state FROM requests").fetchall() == [(A, PENDING)]
    db.close()


def test_stored_for_channel(make: Callable[..., CallbackService]) -> None:
    service = make()
    service.request(A, "1700000000.5")
    assert service.stored_for_channel("1700000000.5")
    assert not service.stored_for_channel("1700000000.6")


def test_unusable_outbox_path_fails_start_with_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    service = CallbackService(
        CrmSettings(username="u", password=PASSWORD),
        OutboxSettings(path=str(tmp_path / "file" / "outbox.sqlite3")),
    )
    with pytest.raises(
        OutboxError, match=r"^cannot create the outbox directory .*/file: a file is in the way$"
    ):
        service.start()
