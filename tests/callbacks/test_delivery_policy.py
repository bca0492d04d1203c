"""The delivery policy with the CRM emulator and a fake clock: what pauses
every request (the CRM cannot be reached, bad credentials), what backs off
only the request it happened to (the CRM answered it badly), the back-off
arithmetic, and when a request is given up. Nothing sleeps for a back-off."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from callbacks_kit import PASSWORD, A, B, C, CeilingJitter, FakeClock, Services, wait_until
from prometheus_client import generate_latest

from stasis_dnd.backoff import full_jitter
from stasis_dnd.callbacks.crm import CrmResult
from stasis_dnd.callbacks.delivery import (
    AUTH_PAUSE,
    MIN_ATTEMPTS,
    REQUEST_BASE,
    REQUEST_CAP,
    RETRY_BASE,
)
from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.callbacks.outbox import DEAD, DELIVERED, PENDING, Entry
from stasis_dnd.metrics import Metrics
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import (
    CUT,
    INVALID_JSON,
    LOGIN_PAGE_REPLY,
    OK,
    SERVER_ERROR,
    error,
    http_status,
    slow,
)

pytestmark = pytest.mark.usefixtures("fresh_crm")


def entries(service: CallbackService) -> list[Entry]:
    assert service.outbox is not None
    return service.outbox.entries()


def entry(service: CallbackService, phone: str) -> Entry:
    [found] = [e for e in entries(service) if e.phone == phone]
    return found


def critical_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]


# --- one request the CRM fails on ---------------------------------------------------


def test_a_number_the_crm_always_fails_on_delays_no_one_and_dies_after_max_age(
    make: Services, crm: CrmEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    crm.for_number(A, SERVER_ERROR)  # a dynamic class that throws on this one number
    service = make(max_age=86400)
    created = clock()
    for n, phone in enumerate((A, B, C)):
        service.request(phone, f"chan-{n}")
    service.deliver_due()
    assert crm.delivered_phones() == [B, C]  # at once, in the same pass
    died_at = None
    for minute in range(1, 26 * 60):
        clock.advance(60)
        if minute % 60 == 0:  # a healthy caller an hour: delivered on the next pass
            healthy = f"+7900555{minute // 60:04d}"
            service.request(healthy, f"chan-h{minute}")
        service.deliver_due()
        if minute % 60 == 0:
            assert [r.answer for r in crm.requests_for(healthy)] == ["ok"]
        if died_at is None and entry(service, A).state == DEAD:
            died_at = clock()
    assert died_at is not None
    assert 86400 < died_at - created <= 86400 + 60  # at the first pass past max_age
    poisoned = entry(service, A)
    assert poisoned.attempts == len(crm.requests_for(A)) >= MIN_ATTEMPTS
    assert poisoned.last_error == "failed: HTTP 500"
    assert len(crm.requests) == len(crm.requests_for(A)) + 2 + 25  # others: once each
    [line] = critical_lines(caplog)
    assert line.startswith(
        f"event=callback_dead id={poisoned.id} request_id={poisoned.request_id}"
        f" caller=+79*******01 attempts={poisoned.attempts} age="
    )
    assert "error='failed: HTTP 500'" in line and A not in line
    stats = service.stats()
    assert (stats.dead, stats.dead_kept, stats.pending) == (1, 1, 0)
    metrics = Metrics()
    metrics.watch_callbacks(service.stats)
    exported = generate_latest(metrics.registry).decode()
    assert "stasis_dnd_callbacks_dead_total 1.0" in exported
    assert 'stasis_dnd_outbox_requests{state="dead"} 1.0' in exported
    assert 'stasis_dnd_outbox_requests{state="pending"} 0.0' in exported
    assert "stasis_dnd_callbacks_delivered_total 27.0" in exported
    assert f"stasis_dnd_crm_attempts_failed_total {poisoned.attempts}.0" in exported
    assert "stasis_dnd_crm_bad_credentials 0.0" in exported


@dataclass(frozen=True)
class Fault:
    name: str
    start: Callable[[CrmEmulator], None]
    last_error: str


def _scripted(*replies: object) -> Callable[[CrmEmulator], None]:
    return lambda crm: crm.script(*replies)  # type: ignore[arg-type]


# The CRM answered this request badly: it may be this request's doing.
FOR_ONE = [
    Fault("500", _scripted(SERVER_ERROR), "failed: HTTP 500"),
    Fault("503", _scripted(http_status(503)), "failed: HTTP 503"),
    Fault("408", _scripted(http_status(408)), "failed: HTTP 408"),
    Fault("302", _scripted(http_status(302)), "bad_answer: HTTP 302 to /login"),
    Fault("404", _scripted(http_status(404)), "bad_answer: HTTP 404"),
    Fault(
        "200-not-json", _scripted(INVALID_JSON), "bad_answer: answer is not JSON (application/json)"
    ),
    Fault("200-status-error", _scripted(error("java.lang.NPE")), "refused: java.lang.NPE"),
    Fault("cut", _scripted(CUT), "failed: Remote end closed connection without response"),
    Fault("read-timeout", _scripted(slow(2.5)), "failed: no answer in time"),
]
# No request could have got through.
FOR_ALL = [
    Fault("refused", lambda crm: crm.outage(), "unavailable: Connection refused"),
    Fault("401", _scripted(http_status(401)), "bad_credentials: HTTP 401 (login failed)"),
    Fault(
        "login-page",
        _scripted(LOGIN_PAGE_REPLY),
        "bad_credentials: the CRM answered with its login page",
    ),
    Fault("429", _scripted(http_status(429)), "unavailable: HTTP 429 (too many requests)"),
]


@pytest.mark.parametrize("fault", FOR_ONE, ids=[f.name for f in FOR_ONE])
def test_a_bad_answer_backs_off_that_request_and_the_next_goes_at_once(
    fault: Fault, make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make()
    service.request(A, "c1")
    service.request(B, "c2")
    fault.start(crm)
    wait = service.deliver_due()
    assert entry(service, B).state == DELIVERED  # in the same pass
    failed = entry(service, A)
    assert (failed.state, failed.attempts, failed.last_error) == (PENDING, 1, fault.last_error)
    assert clock() < failed.next_attempt_at <= clock() + REQUEST_BASE
    assert wait == pytest.approx(failed.next_attempt_at - clock())
    clock.advance(REQUEST_BASE)
    service.deliver_due()
    assert [e.state for e in entries(service)] == [DELIVERED, DELIVERED]
    # (A slow answer is recorded once it is sent: let it land in this test.)
    assert crm.wait_for(lambda c: len(c.requests_for(A)) == 2)


@pytest.mark.parametrize("fault", FOR_ALL, ids=[f.name for f in FOR_ALL])
def test_a_crm_that_cannot_take_any_request_pauses_them_all_without_counting(
    fault: Fault, make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make()
    service.request(A, "c1")
    service.request(B, "c2")
    fault.start(crm)
    wait = service.deliver_due()
    assert 0 < wait <= AUTH_PAUSE
    assert service.deliver_due() == pytest.approx(wait)  # still waiting: nothing sent
    first, second = entries(service)
    assert (first.attempts, first.last_error) == (0, fault.last_error)  # not held against it
    assert (second.attempts, second.last_error) == (0, "")  # not tried past a CRM that is out
    assert len(crm.requests) == (0 if fault.name == "refused" else 1)
    crm.restore()
    clock.advance(AUTH_PAUSE)
    service.deliver_due()
    assert crm.delivered_phones() == [A, B]


def test_back_off_of_one_request_doubles_from_its_own_attempts_up_to_the_cap(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    crm.for_number(A, SERVER_ERROR)
    service = make(rng=CeilingJitter())
    service.request(A, "c1")
    # The ceilings full jitter draws from, after the 1st, 2nd, ... failure (as documented).
    ceilings = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
    for attempt, expected in enumerate(ceilings, start=1):
        wait = service.deliver_due()
        assert (entry(service, A).attempts, wait) == (attempt, expected)
        assert entry(service, A).next_attempt_at == clock() + expected
        clock.advance(expected - 0.5)
        assert service.deliver_due() == 0.5  # not yet due: nothing sent
        assert len(crm.requests) == attempt
        clock.advance(0.5)


def test_the_returned_wait_is_that_of_the_request_due_first(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    crm.for_number(A, SERVER_ERROR)
    crm.for_number(B, error("no such queue"))
    service = make(rng=CeilingJitter())
    service.request(A, "c1")
    assert service.deliver_due() == REQUEST_BASE  # A: next at +30
    clock.advance(REQUEST_BASE)
    assert service.deliver_due() == 2 * REQUEST_BASE  # A: next at +90
    service.request(B, "c2")
    assert service.deliver_due() == REQUEST_BASE  # B (next at +60) is due before A
    clock.advance(REQUEST_BASE)
    assert service.deliver_due() == REQUEST_BASE  # B tried again; A at +90 is next
    assert [r.param("aon") for r in crm.requests] == [A, A, B, B]


def test_dead_only_with_max_age_passed_and_the_minimum_attempts_reached(
    make: Services, crm: CrmEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    assert MIN_ATTEMPTS == 12  # as documented
    crm.for_number(A, SERVER_ERROR)
    service = make(max_age=3600, rng=CeilingJitter())
    created = clock()
    service.request(A, "c1")
    while entry(service, A).attempts < MIN_ATTEMPTS - 1:
        clock.advance(service.deliver_due())
    assert clock() - created > 3600  # old enough, but one attempt short: tried again
    service.deliver_due()
    assert (entry(service, A).state, len(crm.requests)) == (PENDING, MIN_ATTEMPTS)
    assert critical_lines(caplog) == []
    clock.advance(service.deliver_due())
    assert (entry(service, A).state, entry(service, A).attempts) == (DEAD, MIN_ATTEMPTS)
    assert len(crm.requests) == MIN_ATTEMPTS  # reached: given up without another try
    assert len(critical_lines(caplog)) == 1


def test_enough_attempts_but_not_yet_max_age_is_not_dead(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    crm.for_number(A, SERVER_ERROR)
    service = make(max_age=86400, rng=CeilingJitter())
    created = clock()
    service.request(A, "c1")
    while entry(service, A).attempts < MIN_ATTEMPTS:
        clock.advance(service.deliver_due())
    assert clock() - created < 86400
    clock.advance(created + 86400 - clock())  # exactly max_age: not older than it yet
    service.deliver_due()
    assert entry(service, A).state == PENDING
    clock.advance(0.001)
    service.deliver_due()
    assert entry(service, A).state == DEAD


def test_a_crm_failing_every_request_gets_each_once_per_its_own_back_off(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    crm.default = SERVER_ERROR  # e.g. a proxy answering 502 while the CRM restarts
    service = make(dedupe_window=0)
    phones = [f"+7900100{n:04d}" for n in range(20)]
    for n, phone in enumerate(phones):
        service.request(phone, f"chan-{n}")
    assert service.deliver_due() > 0
    assert len(crm.requests) == 20  # each once, one at a time
    assert service.deliver_due() > 0  # no spinning: every one waits its own back-off
    assert len(crm.requests) == 20
    for _ in range(3600):
        clock.advance(1)
        service.deliver_due()
    for e in entries(service):
        # In an hour, from 5 s doubling: about 11 each, not one a second.
        assert e.attempts == len(crm.requests_for(e.phone)) <= 18
    crm.default = OK  # the CRM is back
    clock.advance(REQUEST_CAP)
    service.deliver_due()
    assert sorted(crm.delivered_phones()) == phones


def test_a_bug_while_sending_one_request_does_not_stop_the_others(
    make: Services,
    crm: CrmEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = make(rng=CeilingJitter())
    send = service._client.send

    def buggy(phone: str, request_id: str = "", **kwargs: float | None) -> CrmResult:
        if phone == A:
            raise RuntimeError("bad row")
        return send(phone, request_id)

    monkeypatch.setattr(service._client, "send", buggy)
    for n, phone in enumerate((A, B, C)):
        service.request(phone, f"chan-{n}")
    assert service.deliver_due() == REQUEST_BASE  # A backs off like any failed request
    assert crm.delivered_phones() == [B, C]
    failed = entry(service, A)
    assert (failed.state, failed.attempts) == (PENDING, 1)
    assert failed.last_error == "internal error: RuntimeError"
    [bug] = [r for r in caplog.records if r.getMessage().startswith("event=delivery_bug")]
    assert bug.levelno == logging.ERROR and bug.exc_info is not None


# --- the CRM unreachable ---------------------------------------------------------------


def test_crm_down_for_a_while_then_delivered_in_order(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    crm.outage()
    service = make(deliver=True)
    for n, phone in enumerate((A, B, C)):
        service.request(phone, f"chan-{n}")
    wait_until(lambda: service.stats().attempts_failed >= 1)
    head = entries(service)[0]
    assert (head.last_error, head.attempts) == ("unavailable: Connection refused", 0)
    assert [e.state for e in entries(service)] == [PENDING] * 3
    crm.restore()
    clock.advance(3600)
    service.wake()
    assert crm.wait_for(lambda c: len(c.delivered()) == 3)
    assert crm.delivered_phones() == [A, B, C]


def test_a_crm_unreachable_for_longer_than_max_age_kills_no_request(
    make: Services, crm: CrmEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    service = make(max_age=3600)
    service.request(A, "c1")
    service.request(B, "c2")
    crm.outage()
    for _ in range(3 * 24 * 12):  # three days, a pass every 5 minutes
        clock.advance(300)
        service.deliver_due()
    assert [(e.state, e.attempts) for e in entries(service)] == [(PENDING, 0), (PENDING, 0)]
    assert critical_lines(caplog) == []
    crm.restore()
    clock.advance(300)
    service.deliver_due()
    assert crm.delivered_phones() == [A, B]


@pytest.mark.parametrize("fault", ["refused", "500"])
def test_a_clock_set_back_does_not_stall_delivery(
    fault: str, make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make()
    service.request(A, "c1")
    if fault == "refused":
        crm.outage()  # the queue pauses
    else:
        crm.script(SERVER_ERROR)  # the request backs off
    service.deliver_due()
    crm.restore()
    clock.advance(-86400)  # the clock was set back a day (a bad RTC at boot, NTP)
    service.deliver_due()
    assert crm.delivered_phones() == [A]


def test_caplog_shows_recovery(
    make: Services, crm: CrmEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    service = make()
    service.request(A, "c1")
    crm.outage()
    service.deliver_due()
    crm.restore()
    clock.advance(RETRY_BASE)
    service.deliver_due()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("event=crm_unavailable") for m in messages)
    assert any(m.startswith("event=crm_recovered") for m in messages)
    assert any(m.startswith("event=callback_delivered") for m in messages)
    assert not any(A in m for m in messages)  # numbers are masked in logs


def test_bad_credentials_pause_delivery_with_one_line_per_pause(
    make: Services, crm: CrmEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    crm.password = "changed-on-the-crm"
    service = make()
    for n, phone in enumerate((A, B, C)):
        service.request(phone, f"chan-{n}")

    def login_lines() -> int:
        return sum("event=crm_bad_credentials" in r.getMessage() for r in caplog.records)

    assert service.deliver_due() == pytest.approx(60)
    clock.advance(30)
    assert service.deliver_due() == pytest.approx(30)
    assert (len(crm.requests), login_lines()) == (1, 1)
    assert service.stats().bad_credentials
    clock.advance(30)
    service.deliver_due()
    assert (len(crm.requests), login_lines()) == (2, 2)
    assert entries(service)[0].attempts == 0
    crm.password = PASSWORD  # the admin fixed it
    clock.advance(60)
    service.deliver_due()
    assert crm.delivered_phones() == [A, B, C]
    assert not service.stats().bad_credentials


def test_full_jitter_stays_within_the_ceiling() -> None:
    rng = random.Random(3)
    for failures in range(0, 80):
        delay = full_jitter(failures, 2.0, 300.0, rng)
        assert 0 <= delay <= min(300.0, 2.0 * 2**failures)
    # Full jitter: delays are spread over the whole range, not bunched at the top.
    delays = [full_jitter(10, 2.0, 300.0, rng) for _ in range(200)]
    assert min(delays) < 60 and max(delays) > 240
