"""What the callback service tells the operator about each request, line by
line: stored, repeated, sent directly because the outbox failed, not stored
at all, stored late, and the outbox failing to read or to record; plus its
stats while the outbox is missing or failing."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from callbacks_kit import A, B, Services, hang_writes, sqlite_outbox

from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.callbacks.outbox import OutboxError
from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import slow

pytestmark = pytest.mark.usefixtures("fresh_crm")

WHO = "caller=+79*******01 caller_id=+79*******02"


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


def test_a_stored_and_a_repeated_request_are_one_line_each_and_counted(
    make: Services, caplog: pytest.LogCaptureFixture
) -> None:
    service = make()
    assert service.request(A, "c1", B).result == "stored"
    assert service.outbox is not None
    [entry] = service.outbox.entries()
    assert not service.held(entry.request_id)  # nothing holds it back from delivery
    repeat = service.request(A, "c2", B)
    assert repeat == (True, "duplicate", f"repeats request {entry.id}")
    assert lines(caplog, "event=callback_") == [
        f"event=callback_stored id={entry.id} request_id={entry.request_id} channel=c1 {WHO}",
        f"event=callback_duplicate id={entry.id + 1} of={entry.id} channel=c2 {WHO}",
    ]
    stats = service.stats()
    assert (stats.stored, stats.duplicates) == (1, 1)


def test_a_request_sent_directly_says_why_and_for_whom(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make()
    sqlite_outbox(service).pragma("query_only = 1")
    result = service.request(A, "c1", B)
    assert result.result == "sent"
    reason = result.reason.removeprefix("outbox: ")
    [sent] = crm.delivered()
    assert lines(caplog, "event=outbox_write_failed") + lines(caplog, "event=callback_") == [
        f"event=outbox_write_failed channel=c1 {WHO} error={reason!r} (trying the CRM directly)",
        f"event=callback_sent_directly request_id={sent.request_id} channel=c1 {WHO}",
    ]


def test_a_request_neither_stored_nor_sent_names_both_failures(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make()
    sqlite_outbox(service).pragma("query_only = 1")
    crm.outage()
    result = service.request(A, "c1", B)
    outbox_error, crm_error = result.reason.split("; CRM: ")
    assert lines(caplog, "event=callback_not_stored") == [
        f"event=callback_not_stored channel=c1 {WHO} outbox={outbox_error!r} crm={crm_error!r}"
        " (the caller is told sorry, no callback is promised)"
    ]


def test_a_request_before_start_goes_directly_to_the_crm(
    crm: CrmEmulator, make: Services, caplog: pytest.LogCaptureFixture
) -> None:
    started = make()
    service = CallbackService(started._crm_settings, OutboxSettings(path=make.path))
    before = service.stats()
    assert (before.pending, before.dead_kept) == (0, 0)
    assert service.request(A, "c1").result == "sent"
    assert "error='the outbox is not open'" in lines(caplog, "event=outbox_write_failed")[0]
    assert crm.delivered_phones() == [A]
    assert not service._late  # nothing kept of a request sent directly
    assert service.stored_for_channel("c1")  # from the direct send: no outbox read
    assert service.stored_for_channel("c2") is False
    service.stop()  # never started: nothing to stop, no error


def test_stats_say_minus_one_when_the_outbox_cannot_be_counted(
    make: Services,
) -> None:
    service = make()
    assert service.outbox is not None

    def counts() -> dict[str, int]:
        raise OutboxError("the disk is gone")

    service.outbox.counts = counts  # type: ignore[method-assign]
    stats = service.stats()
    assert (stats.pending, stats.dead_kept) == (-1, -1)


def test_an_outbox_that_cannot_be_read_is_a_warning_naming_the_channel(
    make: Services, caplog: pytest.LogCaptureFixture
) -> None:
    service = make()
    assert service.outbox is not None

    def has_channel(channel_id: str) -> bool:
        raise OutboxError("database is locked")

    service.outbox.has_channel = has_channel  # type: ignore[method-assign]
    assert service.stored_for_channel("c1") is False
    assert lines(caplog, "event=outbox_read_failed") == [
        "event=outbox_read_failed channel=c1 error='database is locked'"
    ]


def test_a_late_write_after_a_direct_send_is_marked_delivered_now_and_said_so(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make(write_timeout=0.2)
    release = hang_writes(service)
    crm.script(slow(0.5))
    threading.Timer(0.3, release.set).start()
    assert service.request(A, "c1", B).result == "sent"
    assert service.stored_for_channel("c1")
    assert service.outbox is not None
    assert crm.wait_for(lambda c: len(c.delivered()) == 1)
    wait_until_line(caplog, "event=callback_stored_late")
    [entry] = service.outbox.entries()
    assert entry.finished_at == make.clock()
    assert lines(caplog, "event=callback_stored_late") == [
        f"event=callback_stored_late id={entry.id} request_id={entry.request_id} {WHO}"
        " (already sent directly)"
    ]


def test_a_late_write_after_a_failed_direct_try_will_be_delivered_and_said_so(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make(write_timeout=0.2)
    release = hang_writes(service)
    crm.outage()
    assert service.request(A, "c1", B).result == "failed"
    crm.restore()
    release.set()
    wait_until_line(caplog, "event=callback_stored_late")
    assert service.outbox is not None
    [entry] = service.outbox.entries()
    assert lines(caplog, "event=callback_stored_late") == [
        f"event=callback_stored_late id={entry.id} request_id={entry.request_id} {WHO}"
        " (will be delivered)"
    ]


def test_a_late_write_that_fails_leaves_nothing_behind(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make(write_timeout=0.2)
    outbox = service.outbox
    assert outbox is not None
    release = threading.Event()

    def add(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        raise OutboxError("disk I/O error")

    outbox.add = add  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG, logger="stasis_dnd")
    result = service.request(A, "c1")
    release.set()
    wait_until_line(caplog, "event=late_write_failed")
    [sent] = crm.delivered()
    request_id = sent.request_id
    assert result.result == "sent"
    assert service.stored_for_channel("c1")  # known from the direct send alone
    assert lines(caplog, "event=late_write_failed") == [
        f"event=late_write_failed request_id={request_id} error='disk I/O error'"
    ]
    assert not service._late  # no memory kept of a request that is settled
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name != "stasis_dnd"]


def test_a_late_write_the_outbox_cannot_mark_delivered_is_a_warning(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    service = make(write_timeout=0.2)
    release = hang_writes(service)
    outbox = service.outbox
    assert outbox is not None

    def mark_delivered(row_id: int, now: float) -> None:
        raise OutboxError("disk full")

    outbox.mark_delivered = mark_delivered  # type: ignore[method-assign]
    crm.script(slow(0.5))
    threading.Timer(0.3, release.set).start()
    assert service.request(A, "c1").result == "sent"
    wait_until_line(caplog, "event=callback_stored_late")
    [entry] = outbox.entries()
    assert lines(caplog, "event=outbox_write_failed id=") == [
        f"event=outbox_write_failed id={entry.id} error='disk full'"
    ]


def wait_until_line(caplog: pytest.LogCaptureFixture, event: str) -> None:
    done = threading.Event()
    for _ in range(1000):
        if lines(caplog, event):
            return
        done.wait(0.01)
    raise AssertionError(f"no {event} line")
