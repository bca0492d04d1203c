"""Delivery before, during and after its thread: a fresh one at any clock
value, the thread it runs in, a stop while a CRM request is in flight, the
settings a request is sent with when no profile shapes it, and the log lines
an operator reads when the CRM comes and goes."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import pytest
from callbacks_kit import A, FakeClock, wait_until
from delivery_kit import DOWN, FAILED, OK, Pass, ScriptedCrm

from stasis_dnd.callbacks.crm import CrmResult
from stasis_dnd.callbacks.delivery import REQUEST_BASE, RETRY_BASE, Delivery
from stasis_dnd.callbacks.outbox import OutboxError
from stasis_dnd.settings import OutboxSettings


def messages(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


def test_a_fresh_delivery_has_no_login_trouble_and_sends_at_once_at_any_clock(
    tmp_path: Path,
) -> None:
    p = Pass(tmp_path, ScriptedCrm())
    p.clock.now = 0.0
    assert p.delivery.bad_credentials is False
    p.store(A)
    p.run()
    assert p.crm.sent == [A]


def test_the_first_pass_prunes_at_any_clock_and_a_second_at_the_same_instant_does_not(
    tmp_path: Path,
) -> None:
    p = Pass(tmp_path, ScriptedCrm(), keep=60.0, dedupe_window=0.0)
    p.clock.now = 0.0
    calls: list[float] = []
    prune = p.outbox.prune_delivered
    p.outbox.prune_delivered = lambda before: calls.append(before) or prune(before)  # type: ignore[method-assign, func-returns-value]
    p.run()
    p.run()
    assert calls == [-60.0]


def test_before_start_and_after_stop_a_pass_touches_no_outbox(tmp_path: Path) -> None:
    crm = ScriptedCrm()
    unstarted = Delivery(
        crm.settings,
        OutboxSettings(),
        crm,
        count=lambda name: None,
        clock=FakeClock(),
        rng=random.Random(1),
        poll_interval=7.0,
    )
    assert unstarted.deliver_due() == 7.0
    p = Pass(tmp_path, crm, poll=7.0)
    p.store(A)
    p.delivery.stop(1.0)
    assert p.run() == 7.0
    assert crm.sent == []


def test_without_a_profile_s_shape_a_request_is_sent_as_the_crm_settings_say(
    tmp_path: Path,
) -> None:
    p = Pass(tmp_path, ScriptedCrm())
    shapes: list[object] = []

    def send(phone: str, request_id: str = "", **kwargs: object) -> CrmResult:
        shapes.append(kwargs["shape"])
        return OK

    p.crm.send = send  # type: ignore[method-assign]
    p.store(A)
    p.run()
    assert shapes == [p.crm.settings]


def test_the_thread_is_named_and_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    p = Pass(tmp_path, ScriptedCrm(), poll=0.01)
    p.delivery.start(p.outbox)
    try:
        [thread] = [t for t in threading.enumerate() if t.name == "outbox-delivery"]
        assert thread.daemon is True
    finally:
        p.delivery.stop(5.0)


def test_stop_waits_only_its_timeout_for_a_request_in_flight_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(tmp_path, ScriptedCrm(), poll=0.01)
    sending, release = threading.Event(), threading.Event()

    def send(phone: str, request_id: str = "", **kwargs: object) -> CrmResult:
        sending.set()
        release.wait(30.0)
        return OK

    p.crm.send = send  # type: ignore[method-assign]
    p.store(A)
    try:
        with caplog.at_level(logging.WARNING, logger="stasis_dnd"):
            p.delivery.start(p.outbox)
            wait_until(sending.is_set)
            p.delivery.stop(0.05)
            assert not release.is_set()  # stop returned while the CRM still had it
        assert messages(caplog, "event=outbox_stop_timeout") == [
            "event=outbox_stop_timeout (a CRM request is still in flight)"
        ]
    finally:
        release.set()


def test_a_delivered_line_names_the_request_its_attempts_and_its_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(tmp_path, ScriptedCrm(FAILED))
    p.store(A, "r1")
    p.run()
    p.clock.advance(REQUEST_BASE)
    with caplog.at_level(logging.INFO, logger="stasis_dnd"):
        p.run()
    assert messages(caplog, "event=callback_delivered") == [
        f"event=callback_delivered id=1 request_id=r1 caller=+79*******01 attempts=2"
        f" waited={REQUEST_BASE:.1f}s"
    ]


def test_an_unreachable_crm_and_its_return_are_one_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(tmp_path, ScriptedCrm(DOWN))
    p.store(A)
    with caplog.at_level(logging.INFO, logger="stasis_dnd"):
        p.run()
        p.clock.advance(RETRY_BASE)
        p.run()
    assert messages(caplog, "event=crm_") == [
        f"event=crm_unavailable url={p.crm.url} error={str(DOWN)!r} tries=1"
        f" retry_in={RETRY_BASE:.1f}s",
        "event=crm_recovered failed_tries=1",
    ]


def test_a_failed_prune_is_one_warning_and_delivery_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pass(tmp_path, ScriptedCrm(), keep=60.0)

    def prune(before: float) -> int:
        raise OutboxError("the disk is full")

    p.outbox.prune_delivered = prune  # type: ignore[method-assign]
    p.store(A)
    with caplog.at_level(logging.WARNING, logger="stasis_dnd"):
        p.run()
    assert messages(caplog, "event=outbox_prune") == [
        "event=outbox_prune_failed error='the disk is full'"
    ]
    assert p.crm.sent == [A]
