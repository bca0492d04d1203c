"""The caller's own number on its way to the CRM: in `[crm] callerid_param`,
only when it differs from the number to call, and the same value on the
direct try, on the stored request's delivery and on every retry of it."""

from __future__ import annotations

import dataclasses

import pytest
from callbacks_kit import PASSWORD, A, B

from stasis_dnd.callbacks.crm import CrmClient
from stasis_dnd.settings import CrmSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator

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
