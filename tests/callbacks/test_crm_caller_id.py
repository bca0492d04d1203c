"""The caller's own number on its way to the CRM: in `[crm] callerid_param`,
only when it differs from the number to call, and the same value on the
direct try, on the stored request's delivery and on every retry of it."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from callbacks_kit import PASSWORD, A, B, C, FakeClock, Services, sqlite_outbox

from stasis_dnd.callbacks.crm import CrmClient
from stasis_dnd.callbacks.delivery import MIN_ATTEMPTS, REQUEST_CAP
from stasis_dnd.callbacks.outbox import DEAD
from stasis_dnd.settings import CrmSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import SERVER_ERROR

pytestmark = pytest.mark.usefixtures("fresh_crm")


def settings_for(crm: CrmEmulator, **changes: object) -> CrmSettings:
    base = CrmSettings(url=crm.url, username="dnd", password=PASSWORD, timeout=5.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def send(crm: CrmEmulator, phone: str, caller_id: str, **changes: object) -> None:
    client = CrmClient(settings_for(crm, **changes))
    try:
        assert client.send(phone, "rid", caller_id=caller_id).delivered
    finally:
        client.close()


# --- the parameter ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "get"])
def test_the_caller_id_goes_in_its_own_parameter_with_the_plus_intact(
    crm: CrmEmulator, method: str
) -> None:
    send(crm, A, "+79001234567", method=method)
    [received] = crm.requests
    assert received.param("aon") == A
    assert received.param("callerId") == "+79001234567"
    assert received.names().count("callerId") == 1


def test_no_caller_id_sends_no_parameter(crm: CrmEmulator) -> None:
    send(crm, A, "")
    assert "callerId" not in crm.requests[0].names()


def test_an_empty_callerid_param_never_sends_it(crm: CrmEmulator) -> None:
    send(crm, A, B, callerid_param="")
    assert B not in [value for _, value in crm.requests[0].params]


def test_the_parameter_name_is_the_configured_one(crm: CrmEmulator) -> None:
    send(crm, A, B, callerid_param="from")
    received = crm.requests[0]
    assert (received.param("from"), received.param("callerId")) == (B, None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"callerid_param": "callback"}, "callback"),
        ({"callerid_param": "Callback"}, "callback"),
        ({"callerid_param": "aon"}, "phone_param"),
        ({"phone_param": "phone", "callerid_param": "phone"}, "phone_param"),
        ({"callerid_param": "requestId"}, "request_id_param"),
    ],
)
def test_a_callerid_param_that_would_clash_is_one_sentence(
    changes: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        dataclasses.replace(CrmSettings(), **changes)  # type: ignore[arg-type]
    assert "callerid_param" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["j_password", "responseType", "class"])
def test_a_callerid_param_the_protocol_uses_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="used by the CRM protocol"):
        CrmClient(CrmSettings(callerid_param=name))


def test_an_extra_param_cannot_override_the_caller_id() -> None:
    with pytest.raises(ValueError, match="'callerId' is already sent"):
        CrmClient(CrmSettings(params=(("callerId", "x"),)))


# --- stored, sent directly, delivered, retried ------------------------------------------


def test_a_stored_request_is_delivered_with_its_caller_id(make: Services, crm: CrmEmulator) -> None:
    service = make()
    assert service.request(A, "c1", B).result == "stored"
    assert service.request(C, "c2").result == "stored"
    assert service.outbox is not None
    assert [e.caller_id for e in service.outbox.entries()] == [B, ""]
    service.deliver_due()
    assert [(r.param("aon"), r.param("callerId")) for r in crm.delivered()] == [(A, B), (C, None)]


def test_every_attempt_and_the_manual_retry_send_the_same_caller_id(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make(max_age=3600)
    service.request(A, "c1", B)
    assert service.outbox is not None
    [stored] = service.outbox.entries()
    crm.for_number(A, SERVER_ERROR)  # the CRM fails on this request until it dies
    for attempt in range(MIN_ATTEMPTS):
        if attempt == 5:
            crm.outage()  # the CRM unreachable: a pause, not the request's attempt
            service.deliver_due()
            crm.restore()
            clock.advance(REQUEST_CAP)
        service.deliver_due()
        clock.advance(REQUEST_CAP)
    service.deliver_due()
    assert service.outbox.entries()[0].state == DEAD
    tried = crm.requests_for(A)
    crm.clear()
    service.outbox.retry(stored.id, clock())  # `stasis-dnd outbox retry`
    service.deliver_due()
    tried += crm.requests_for(A)
    assert len(tried) == MIN_ATTEMPTS + 1
    assert [r.answer for r in tried[-2:]] == ["server_error", "ok"]
    assert {(r.request_id, r.param("callerId")) for r in tried} == {(stored.request_id, B)}


def test_the_direct_try_sends_the_caller_id(make: Services, crm: CrmEmulator) -> None:
    service = make()
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")  # the outbox cannot store it
    result = service.request(A, "c1", B)
    assert (result.ok, result.result) == (True, "sent")
    [received] = crm.requests
    assert (received.param("aon"), received.param("callerId")) == (A, B)


def test_logs_mask_the_caller_id_like_the_number(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    service = make()
    service.request(A, "c1", "+79007654321")
    service.request(A, "c2", "+79007654321")  # a repeat
    service.deliver_due()
    lines = [r.getMessage() for r in caplog.records]
    for event in ("callback_stored", "callback_duplicate", "callback_delivered"):
        [line] = [m for m in lines if m.startswith(f"event={event} ")]
        assert "caller=+79*******01 caller_id=+79*******21" in line, line
    assert "+79007654321" not in caplog.text
