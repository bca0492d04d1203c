"""Delivery's arithmetic at its edges, one pass at a time on a real outbox with
a scripted CRM and a fake clock: how long the queue waits after a CRM-wide
failure and after a failure of one request, the claim's lease, a clock set
back, a held request, a full batch, and pruning with its hourly rhythm."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from callbacks_kit import A, B, wait_until
from delivery_kit import DOWN, FAILED, OK, Pass, ScriptedCrm

from stasis_dnd.backoff import ceiling
from stasis_dnd.callbacks.crm import CrmOutcome, CrmResult
from stasis_dnd.callbacks.delivery import (
    AUTH_PAUSE,
    CLAIM_MARGIN,
    HELD_RECHECK,
    PRUNE_INTERVAL,
    REQUEST_BASE,
    REQUEST_CAP,
    RETRY_BASE,
    RETRY_CAP,
)
from stasis_dnd.callbacks.outbox import DELIVERED, PENDING, OutboxError


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_a_crm_wide_failure_holds_the_queue_for_the_back_off_and_counts_no_attempt(
    folder: Path,
) -> None:
    p = Pass(folder, ScriptedCrm(DOWN, DOWN))
    first = p.store(A)
    p.store(B)
    assert p.run() == RETRY_BASE  # the ceiling after no failure: base
    assert p.crm.sent == [A]  # B waits behind A: nothing can get through
    assert p.entry(first.id).attempts == 0
    p.clock.advance(RETRY_BASE - 0.5)
    assert p.run() == pytest.approx(0.5)  # still paused: nothing sent
    assert p.crm.sent == [A]
    p.clock.advance(0.5)
    assert p.run() == ceiling(1, RETRY_BASE, RETRY_CAP)  # doubled
    assert p.crm.sent == [A, A]


def test_a_failure_of_one_request_backs_off_only_that_one(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(FAILED))
    first = p.store(A)
    second = p.store(B)
    now = p.clock()
    assert p.run() == REQUEST_BASE  # the earliest next attempt: A's
    assert p.crm.sent == [A, B]
    failed = p.entry(first.id)
    assert (failed.state, failed.attempts, failed.last_error) == (PENDING, 1, "failed: HTTP 500")
    assert failed.next_attempt_at == now + REQUEST_BASE
    assert p.entry(second.id).state == DELIVERED


def test_the_request_back_off_grows_with_its_own_attempts_up_to_its_cap(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(*[FAILED] * 12))
    entry = p.store(A)
    for attempt in range(12):
        now = p.clock()
        p.run()
        expected = min(REQUEST_CAP, REQUEST_BASE * 2**attempt)
        assert p.entry(entry.id).next_attempt_at == now + expected
        p.clock.advance(expected)


def test_a_request_is_claimed_for_two_timeouts_and_the_margin(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm())
    entry = p.store(A)
    now = p.clock()
    claimed: list[float] = []

    def send(phone: str, request_id: str = "", **kwargs: object) -> CrmResult:
        claimed.append(p.entry(entry.id).next_attempt_at)
        return OK

    p.crm.send = send  # type: ignore[method-assign]
    p.run()
    assert claimed == [now + 2 * 3.0 + CLAIM_MARGIN]


def test_a_clock_set_back_ends_a_pause_that_would_outlast_any_real_one(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(CrmResult(CrmOutcome.BAD_CREDENTIALS, "HTTP 401", 401)))
    p.store(A)
    assert p.run() == AUTH_PAUSE
    assert p.delivery.bad_credentials
    p.clock.advance(-(RETRY_CAP - AUTH_PAUSE))  # the pause is now exactly RETRY_CAP away
    assert p.run() == RETRY_CAP
    p.clock.advance(-1.0)  # one second more than any pause: the clock went back
    p.store(B)
    p.run()
    assert p.crm.sent == [A, B]
    assert not p.delivery.bad_credentials


def test_a_held_request_is_looked_at_again_soon_but_not_at_once(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm())
    p.store(A, "r1")
    p.held.add("r1")
    assert p.run() == HELD_RECHECK
    assert p.crm.sent == []
    p.held.clear()
    assert p.run() == 5.0  # delivered; nothing pending: the idle poll
    assert p.crm.sent == [A]


def test_a_full_batch_asks_for_the_next_pass_at_once(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm())
    for n in range(101):
        p.store(f"+7900{n:07d}")
    assert p.run() == 0.0
    assert len(p.crm.sent) == 100
    assert p.run() == 5.0
    assert len(p.crm.sent) == 101


def spy_on_pruning(p: Pass) -> list[float]:
    """The `before` of each prune the delivery asks the outbox for."""
    calls: list[float] = []
    prune = p.outbox.prune_delivered

    def recording(before: float) -> int:
        calls.append(before)
        return prune(before)

    p.outbox.prune_delivered = recording  # type: ignore[method-assign]
    return calls


def test_pruning_runs_at_the_first_pass_then_once_every_interval(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(), keep=60.0, dedupe_window=0.0)
    calls = spy_on_pruning(p)
    start = p.clock()
    p.run()
    assert calls == [start - 60.0]
    p.clock.advance(PRUNE_INTERVAL - 1.0)
    p.run()
    assert len(calls) == 1
    p.clock.advance(1.0)
    p.run()
    assert calls == [start - 60.0, start + PRUNE_INTERVAL - 60.0]


def test_pruning_keeps_at_least_the_dedupe_window(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(), keep=60.0, dedupe_window=600.0)
    calls = spy_on_pruning(p)
    p.run()
    assert calls == [p.clock() - 600.0]


def test_a_clock_set_back_by_more_than_the_interval_prunes_at_once(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(), keep=60.0, dedupe_window=0.0)
    calls = spy_on_pruning(p)
    p.run()
    p.clock.advance(-1.0)  # the next prune is the interval and a second away
    p.run()
    assert len(calls) == 2
    p.clock.advance(0.5)
    p.run()
    assert len(calls) == 2


def test_a_delivered_request_is_deleted_once_older_than_keep(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(), keep=60.0, dedupe_window=0.0)
    old = p.store(A)
    p.run()
    p.clock.advance(PRUNE_INTERVAL)
    p.run()
    assert p.outbox.get(old.id) is None


def test_keep_zero_never_prunes(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(), keep=0.0, dedupe_window=0.0)
    calls = spy_on_pruning(p)
    p.run()
    p.clock.advance(10 * PRUNE_INTERVAL)
    p.run()
    assert calls == []


# --- the log lines operators alert on ------------------------------------------------


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_failed_request_s_warning_names_it_its_attempt_and_its_wait(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(folder, ScriptedCrm(FAILED))
    p.outbox.add(A, "ch", "r1", p.clock(), caller_id=B)
    with caplog.at_level(logging.WARNING, logger="stasis_dnd"):
        p.run()
    assert messages(caplog, logging.WARNING) == [
        "event=crm_request_failed id=1 request_id=r1 caller=+79*******01"
        " caller_id=+79*******02 attempts=1 retry_in=5s error='failed: HTTP 500'"
    ]


def test_a_dead_request_s_line_says_its_age_and_how_to_send_it_again(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(folder, ScriptedCrm(*[FAILED] * 12), max_age=60.0)
    p.outbox.add(A, "ch", "r1", p.clock(), caller_id=B)
    for _ in range(12):
        p.run()
        p.clock.advance(REQUEST_CAP)
    with caplog.at_level(logging.CRITICAL, logger="stasis_dnd"):
        p.run()
    assert messages(caplog, logging.CRITICAL) == [
        f"event=callback_dead id=1 request_id=r1 caller=+79*******01 caller_id=+79*******02"
        f" attempts=12 age={12 * REQUEST_CAP:.0f}s error='failed: HTTP 500'"
        " (no callback will be filed; `stasis-dnd outbox retry 1` sends it again)"
    ]


def test_bad_credentials_are_one_critical_line_naming_what_to_fix(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crm = ScriptedCrm(CrmResult(CrmOutcome.BAD_CREDENTIALS, "HTTP 401 (login failed)", 401))
    p = Pass(folder, crm)
    p.store(A)
    with caplog.at_level(logging.CRITICAL, logger="stasis_dnd"):
        p.run()
    assert messages(caplog, logging.CRITICAL) == [
        f"event=crm_bad_credentials url={crm.url} username= error='HTTP 401 (login failed)'"
        f" (delivery paused {AUTH_PAUSE:.0f}s; fix [crm] username / password)"
    ]


def test_a_bug_sending_one_request_is_logged_with_its_traceback_and_counted(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(folder, ScriptedCrm())

    def send(phone: str, request_id: str = "", **kwargs: object) -> CrmResult:
        raise RuntimeError("boom")

    p.crm.send = send  # type: ignore[method-assign]
    entry = p.store(A)
    with caplog.at_level(logging.ERROR, logger="stasis_dnd"):
        p.run()
    [bug] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert bug.getMessage() == "event=delivery_bug id=1 error='boom'"
    assert bug.exc_info and bug.exc_info[0] is RuntimeError
    failed = p.entry(entry.id)
    assert (failed.attempts, failed.last_error) == (1, "internal error: RuntimeError")


def test_a_request_the_crm_took_but_the_outbox_did_not_record_is_not_sent_again(
    folder: Path,
) -> None:
    p = Pass(folder, ScriptedCrm())
    entry = p.store(A)
    record = p.outbox.mark_delivered
    failures = [OutboxError("disk full")]

    def flaky(row_id: int, now: float) -> None:
        if failures:
            raise failures.pop()
        record(row_id, now)

    p.outbox.mark_delivered = flaky  # type: ignore[method-assign]
    with pytest.raises(OutboxError):
        p.run()
    p.clock.advance(2 * 3.0 + CLAIM_MARGIN)  # the claim ran out: due again
    p.run()
    assert p.crm.sent == [A]
    done = p.entry(entry.id)
    assert (done.state, done.finished_at) == (DELIVERED, p.clock())


def test_the_thread_logs_an_outbox_error_in_one_line_and_a_bug_with_its_traceback(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(folder, ScriptedCrm(), poll=0.01)
    passes: list[int] = []

    def deliver_due() -> float:
        passes.append(1)
        if len(passes) == 1:
            raise OutboxError("the disk is full")
        if len(passes) == 2:
            raise RuntimeError("bug")
        return 0.01

    p.delivery.deliver_due = deliver_due  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="stasis_dnd"):
        p.delivery.start(p.outbox)
        try:
            wait_until(lambda: len(passes) >= 3)
        finally:
            p.delivery.stop(5.0)
    first, second = [r for r in caplog.records if r.levelno == logging.ERROR][:2]
    assert first.getMessage() == "event=outbox_delivery_error error='the disk is full'"
    assert not first.exc_info
    assert second.getMessage() == "event=outbox_delivery_error error='bug'"
    assert second.exc_info is not None


def test_a_held_request_does_not_stop_the_pass_for_those_behind_it(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm())
    p.store(A, "r1")
    p.store(B, "r2")
    p.held.add("r1")
    p.run()
    assert p.crm.sent == [B]


def test_without_a_held_request_the_pass_waits_exactly_until_the_next_is_due(
    folder: Path,
) -> None:
    p = Pass(folder, ScriptedCrm(FAILED))
    p.store(A)
    p.run()  # A failed: due again in REQUEST_BASE
    p.clock.advance(REQUEST_BASE - 0.1)
    assert p.run() == pytest.approx(0.1)  # below HELD_RECHECK: nothing is held


def test_a_keep_of_one_second_prunes(folder: Path) -> None:
    p = Pass(folder, ScriptedCrm(), keep=1.0, dedupe_window=0.0)
    calls = spy_on_pruning(p)
    p.run()
    assert calls == [p.clock() - 1.0]
