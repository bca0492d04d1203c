"""Each stored request is sent with its profile's [crm] settings (class,
sub, parameters), by the delivery, every retry and the direct try; a repeat
is one within the same profile; a profile gone from the config falls back
to [crm] with one warning."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from callbacks_kit import A, FakeClock, Services, sqlite_outbox

from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.settings import CrmSettings, OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import SERVER_ERROR

pytestmark = pytest.mark.usefixtures("fresh_crm", "sales_class")

SALES = {"sub": "dndsales", "class_name": "ru.example.Sales", "params": (("line", "sales"),)}
SHAPES = {"sales": SALES}


@pytest.fixture
def sales_class(crm: CrmEmulator) -> Iterator[None]:
    crm.also_classes = ("ru.example.Sales",)  # the CRM runs the sales class too
    yield
    crm.also_classes = ()


def facts(profile: str) -> tuple[tuple[str, str], ...]:
    return (("queue", "998"), ("profile", profile))


def test_delivery_and_retries_use_the_requests_profile(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make(profiles=SHAPES, context_params=(("profile", "profile"),))
    assert service.request(A, "c1", "", facts("sales")).result == "stored"
    assert service.request("+79000000009", "c2", "", facts("default")).result == "stored"
    crm.for_number(A, SERVER_ERROR)
    service.deliver_due()
    sales, other = crm.requests_for(A), crm.requests_for("+79000000009")
    crm.clear()
    clock.advance(3600)
    service.deliver_due()
    sales += crm.requests_for(A)
    assert [r.answer for r in sales] == ["server_error", "ok"]
    for request in sales:
        assert (request.param("class"), request.param("sub")) == ("ru.example.Sales", "dndsales")
        assert (request.param("line"), request.param("profile")) == ("sales", "sales")
        assert request.param("j_username") == "dnd"  # one login for all
    assert [r.param("sub") for r in other] == ["dndoperator"]
    assert (other[0].param("line"), other[0].param("profile")) == (None, "default")


def test_the_direct_try_uses_the_requests_profile(make: Services, crm: CrmEmulator) -> None:
    service = make(profiles=SHAPES)
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")  # the outbox cannot store it
    assert service.request(A, "c1", "", facts("sales")).result == "sent"
    [received] = crm.requests
    assert received.param("sub") == "dndsales"


def test_a_repeat_is_one_within_the_same_profile(make: Services) -> None:
    service = make(profiles=SHAPES)
    assert service.request(A, "c1", "", facts("sales")).result == "stored"
    assert service.request(A, "c2", "", facts("default")).result == "stored"  # support calls too
    assert service.request(A, "c3", "", facts("sales")).result == "duplicate"
    assert service.request(A, "c4", "", ()).result == "duplicate"  # no profile: the default


def test_a_profile_gone_from_the_config_is_sent_as_crm_says_with_one_warning(
    make: Services, crm: CrmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    old = make(profiles={"gone": {"sub": "old"}})
    for n, channel in enumerate(("c1", "c2")):
        assert old.request(f"+7900000000{n}", channel, "", facts("gone")).result == "stored"
    old.stop()
    service = make()
    with caplog.at_level(logging.WARNING, logger="stasis_dnd"):
        service.deliver_due()
    assert [r.param("sub") for r in crm.delivered()] == ["dndoperator", "dndoperator"]
    warned = [r.getMessage() for r in caplog.records if "outbox_unknown_profile" in r.getMessage()]
    assert warned == [  # at the first request of it, once
        "event=outbox_unknown_profile id=1 profile='gone' (no such profile in the"
        " config any more: sent with [crm] as it is)"
    ]


def test_a_profile_whose_parameters_clash_is_refused_naming_it(crm: CrmEmulator) -> None:
    base = CrmSettings(url=crm.url, username="dnd", password="pw")
    clash = CrmSettings(url=crm.url, username="dnd", password="pw", params=(("sub", "x"),))
    with pytest.raises(ValueError, match=r"^\[profile:sales\] params: 'sub' is already sent"):
        CallbackService(base, OutboxSettings(path="/nonexistent/x"), profiles={"sales": clash})
