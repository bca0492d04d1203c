"""Several instances on one PostgreSQL outbox, against the recording CRM
emulator: threads and processes delivering the same pending requests send
each exactly once; a claimer killed mid-delivery leaves its request to
another after the lease; two services storing the same number at once file
one request; a database down costs no caller their callback."""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from callbacks_kit import Services, wait_until

from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.callbacks.outbox import DELIVERED, PENDING
from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import CUT, slow
from stasis_dnd.testing.postgres import TempPostgres

DELIVERER = Path(__file__).with_name("pg_deliverer.py")


@pytest.fixture
def shared(crm: CrmEmulator, tmp_path: Path, postgres_outbox: OutboxSettings) -> Iterator[Services]:
    """Services on this test's PostgreSQL database, on the real clock (several
    processes share it)."""
    crm.clear()
    services = Services(crm, tmp_path, time.time, postgres_outbox)
    yield services
    services.stop_all()
    crm.restore()


class Deliverer:
    """An instance delivering in a process of its own (pg_deliverer.py)."""

    def __init__(self, outbox: OutboxSettings, crm: CrmEmulator, timeout: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(DELIVERER), outbox.url, crm.url, str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PGPASSWORD": outbox.password},
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "ready\n"

    def finish(self) -> int:
        """Stop it; how many requests it delivered."""
        out, _ = self.process.communicate(timeout=30)
        assert self.process.returncode == 0
        return int(out.strip())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)


def test_threads_and_processes_deliver_each_request_exactly_once(
    shared: Services, crm: CrmEmulator, postgres_outbox: OutboxSettings
) -> None:
    crm.default = slow(0.02)  # a send takes a moment, so the instances overlap
    processes = [Deliverer(postgres_outbox, crm, 5.0) for _ in range(2)]
    try:
        threads = [shared(deliver=True, poll_interval=0.05) for _ in range(3)]
        storer = shared(dedupe_window=0)
        stored = [storer.request(f"+790000{n:05d}", f"chan-{n}").result for n in range(40)]
        assert stored == ["stored"] * 40
        for service in threads:
            service.wake()
        assert crm.wait_for(lambda c: len(c.delivered()) >= 40, timeout=60)
        assert storer.outbox is not None
        wait_until(lambda: storer.outbox is not None and storer.outbox.counts()[PENDING] == 0)
    finally:
        by_process = [p.finish() for p in processes]
    shared.stop_all()
    by_thread = [s.stats().delivered for s in threads]
    ids = collections.Counter(crm.delivered_ids())
    assert len(ids) == 40 and set(ids.values()) == {1}
    assert len(crm.requests) == 40  # no other attempt was made either
    assert sum(by_process) + sum(by_thread) == 40
    # Both kinds of instance took part.
    assert sum(by_process) > 0 and sum(by_thread) > 0


def test_a_claimer_killed_mid_delivery_leaves_the_request_to_another_after_its_lease(
    shared: Services, crm: CrmEmulator, postgres_outbox: OutboxSettings
) -> None:
    # The killed instance's send never gets an answer.
    crm.script(slow(30, then=CUT))
    storer = shared()
    assert storer.request("+79000000001", "chan-1").result == "stored"
    assert storer.outbox is not None
    [entry] = storer.outbox.entries()
    doomed = Deliverer(postgres_outbox, crm, 2.0)  # lease: 2 * 2 s + the margin

    def claimed() -> bool:
        assert storer.outbox is not None
        now = storer.outbox.get(entry.id)
        return now is not None and now.next_attempt_at > entry.next_attempt_at

    try:
        wait_until(claimed)
    finally:
        doomed.kill()  # SIGKILL while its send waits for the CRM
    survivor = shared(deliver=True, poll_interval=0.05)
    assert crm.wait_for(lambda c: c.delivered_ids() == [entry.request_id], timeout=60)
    wait_until(lambda: storer.outbox is not None and storer.outbox.counts()[DELIVERED] == 1)
    assert survivor.stats().delivered == 1


def requested_at_once(services: list[CallbackService], number: str) -> list[str]:
    """Each service is asked for a callback to `number` at the same moment."""
    start = threading.Barrier(len(services))
    results: list[str] = []

    def ask(n: int) -> None:
        start.wait()
        results.append(services[n].request(number, f"chan-{n}").result)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(services))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results)


def test_two_services_storing_the_same_number_at_once_file_one_request(
    shared: Services,
) -> None:
    first, second = shared(), shared()
    for n in range(5):
        assert requested_at_once([first, second], f"+7900000020{n}") == ["duplicate", "stored"]
    assert first.outbox is not None
    assert first.outbox.counts()[PENDING] == 5


def test_a_database_down_sends_directly_and_storing_resumes_when_it_is_back(
    shared: Services, crm: CrmEmulator, postgres: TempPostgres
) -> None:
    service = shared()
    assert service.request("+79000000001", "chan-1").result == "stored"
    postgres.stop()
    try:
        # The caller is still promised a callback: the CRM has it directly.
        assert service.request("+79000000002", "chan-2").result == "sent"
        assert crm.delivered_phones() == ["+79000000002"]
        assert service.stats().pending == -1  # metrics say the outbox cannot be read
    finally:
        postgres.start()
    assert service.request("+79000000003", "chan-3").result == "stored"
    assert service.stats().pending == 2


def test_the_service_logs_the_database_without_its_password(
    shared: Services, postgres_outbox: OutboxSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    service = shared()
    assert service.request("+79000000001", "chan-1").result == "stored"
    assert f"event=outbox_opened path={postgres_outbox.url} pending=0" in caplog.text
    assert postgres_outbox.password not in caplog.text
