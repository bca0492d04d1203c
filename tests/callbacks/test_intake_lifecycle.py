"""The callback service's threads and the settings it hands on: the writer
thread, delivery by default, a bounded stop, the direct try's own timeout,
how many directly-sent channels it remembers, and the delivery pauses it
was given."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from callbacks_kit import PASSWORD, A, B, C, Services, sqlite_outbox

from stasis_dnd.callbacks import intake
from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.settings import CrmSettings, OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import slow

pytestmark = pytest.mark.usefixtures("fresh_crm")


def service_for(crm: CrmEmulator, tmp_path: Path, **options: float) -> CallbackService:
    return CallbackService(
        CrmSettings(url=crm.url, username="dnd", password=PASSWORD, timeout=2.0),
        OutboxSettings(path=str(tmp_path / "outbox.sqlite3")),
        **options,  # type: ignore[arg-type]
    )


def test_start_delivers_by_default_from_a_named_daemon_writer(
    crm: CrmEmulator, tmp_path: Path
) -> None:
    service = service_for(crm, tmp_path)
    service.start()
    try:
        [writer] = [t for t in threading.enumerate() if t.name == "outbox-writer"]
        assert writer.daemon is True  # a write hung on a dead disk must not block exit
        assert service.request(A, "c1").result == "stored"
        assert crm.wait_for(lambda c: c.delivered_phones() == [A])
    finally:
        service.stop()


def test_stop_hands_its_timeout_to_the_delivery_thread(crm: CrmEmulator, tmp_path: Path) -> None:
    service = service_for(crm, tmp_path)
    service.start(deliver=False)
    seen: list[float] = []
    real_stop = service._delivery.stop

    def recording(timeout: float) -> None:
        seen.append(timeout)
        real_stop(timeout)

    service._delivery.stop = recording  # type: ignore[method-assign]
    service.stop(0.05)
    assert seen == [0.05]  # the delivery's own test pins that it waits no longer


def test_the_direct_try_waits_no_longer_than_its_own_timeout(
    crm: CrmEmulator, tmp_path: Path
) -> None:
    service = service_for(crm, tmp_path, direct_timeout=0.2)
    service.start(deliver=False)
    try:
        sqlite_outbox(service).pragma("query_only = 1")
        crm.script(slow(1.0))
        result = service.request(A, "c1")
        assert (result.ok, result.result) == (False, "failed")  # the CRM's 2 s were not waited
    finally:
        service.stop()


def test_the_last_thousand_directly_sent_channels_are_remembered(
    make: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "_DIRECT_MEMORY", 2)
    service = make(dedupe_window=0)
    sqlite_outbox(service).pragma("query_only = 1")
    for phone, channel in ((A, "c1"), (B, "c2"), (C, "c3")):
        assert service.request(phone, channel).result == "sent"
    assert [service.stored_for_channel(c) for c in ("c1", "c2", "c3")] == [False, True, True]


def test_delivery_gets_the_poll_interval_and_the_login_pause_given(
    crm: CrmEmulator, tmp_path: Path
) -> None:
    service = service_for(crm, tmp_path, poll_interval=7.0, auth_pause=3.0)
    service.start(deliver=False)
    try:
        assert service.deliver_due() == 7.0  # nothing pending: the idle poll
        crm.password = "changed"
        service.request(A, "c1")
        assert service.deliver_due() == 3.0  # a wrong login: the login pause
    finally:
        service.stop()
