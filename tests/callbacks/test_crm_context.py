"""Facts about the call on their way to the CRM: under the names `[crm]
context_params` gives them, form-encoded as values only, stored with the
request so the direct try, the delivery and every retry send the same, and
kept by an outbox file of the previous version."""

from __future__ import annotations

import dataclasses
import datetime
import sqlite3
from pathlib import Path

import pytest
from callbacks_kit import PASSWORD, A, B, FakeClock, Services, sqlite_outbox
from test_outbox_caller_id import old_outbox

from stasis_dnd.callbacks.crm import CrmClient
from stasis_dnd.callbacks.outbox import Outbox
from stasis_dnd.settings import CrmSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import SERVER_ERROR

pytestmark = pytest.mark.usefixtures("fresh_crm")

MAPPING = (
    ("queue", "queue"),
    ("reason", "reason"),
    ("waited", "waited_seconds"),
    ("line", "dialled"),
    ("call_id", "linkedid"),
    ("at", "requested_at"),
)
FACTS = (
    ("queue", "999"),
    ("reason", "TIMEOUT"),
    ("waited_seconds", "42"),
    ("dialled", "4951234567"),
    ("linkedid", "1700000000.7"),
)


def client_for(crm: CrmEmulator, **changes: object) -> CrmClient:
    base = CrmSettings(url=crm.url, username="dnd", password=PASSWORD, context_params=MAPPING)
    return CrmClient(dataclasses.replace(base, **changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["post", "get"])
def test_the_facts_go_under_their_configured_names(crm: CrmEmulator, method: str) -> None:
    client = client_for(crm, method=method)
    hostile = (("queue", "q&aon=1=%41"), ("dialled", "+7 495"))
    try:
        assert client.send(A, "rid", context=hostile).delivered
    finally:
        client.close()
    [received] = crm.requests
    assert received.param("queue") == "q&aon=1=%41"  # a value, never another parameter
    assert received.param("line") == "+7 495"  # the + intact
    assert received.names().count("aon") == 1
    for absent in ("reason", "waited", "call_id", "at"):  # no value: not sent
        assert absent not in received.names()


def test_no_context_params_sends_no_fact(crm: CrmEmulator) -> None:
    client = client_for(crm, context_params=())
    try:
        pairs = client.params(A, "rid", context=FACTS)
    finally:
        client.close()
    assert not {value for _, value in pairs} & {value for _, value in FACTS}


def test_a_value_from_an_old_row_is_cleaned_again(crm: CrmEmulator) -> None:
    client = client_for(crm)
    try:
        pairs = dict(client.params(A, context=(("queue", "9\r\n9\x00" + "9" * 100),)))
    finally:
        client.close()
    assert pairs["queue"] == "9" * 64


@pytest.mark.parametrize("name", ["class", "j_password", "responseType", "sub"])
def test_a_context_param_the_protocol_uses_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="already sent"):
        CrmClient(CrmSettings(context_params=((name, "queue"),)))


def test_stored_delivered_and_retried_with_the_same_facts(
    make: Services, crm: CrmEmulator, clock: FakeClock
) -> None:
    service = make(context_params=MAPPING)
    assert service.request(A, "c1", "", FACTS).result == "stored"
    assert service.outbox is not None
    [entry] = service.outbox.entries()
    assert entry.context[:-1] == FACTS
    requested_at = entry.fact("requested_at")
    when = datetime.datetime.fromisoformat(requested_at)
    assert when.utcoffset() is not None  # ISO 8601 with its offset
    assert when.timestamp() == clock()
    crm.for_number(A, SERVER_ERROR)
    service.deliver_due()  # refused: retried later
    sent = crm.requests_for(A)
    crm.clear()
    clock.advance(3600)
    service.deliver_due()
    sent += crm.requests_for(A)
    assert [r.answer for r in sent] == ["server_error", "ok"]
    expected = {
        "queue": "999",
        "reason": "TIMEOUT",
        "waited": "42",
        "line": "4951234567",
        "call_id": "1700000000.7",
        "at": requested_at,
    }
    for request in sent:
        assert {name: request.param(name) for name in expected} == expected


def test_the_direct_try_sends_the_facts(make: Services, crm: CrmEmulator) -> None:
    service = make(context_params=MAPPING)
    assert service.outbox is not None
    sqlite_outbox(service).pragma("query_only = 1")  # the outbox cannot store it
    assert service.request(A, "c1", "", FACTS).result == "sent"
    [received] = crm.requests
    assert (received.param("queue"), received.param("call_id")) == ("999", "1700000000.7")
    assert received.param("at")


def test_an_outbox_without_the_context_column_gets_it(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.sqlite3")
    old_outbox(path)  # as the version before the caller id left it
    db = sqlite3.connect(path)
    # ... then the previous version: the caller id, no context.
    db.execute("ALTER TABLE requests ADD COLUMN caller_id TEXT NOT NULL DEFAULT ''")
    db.execute("UPDATE requests SET caller_id = ?", (B,))
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    reopened = Outbox.open(path)
    try:
        [kept] = reopened.entries()
        assert (kept.request_id, kept.caller_id, kept.context) == ("old-1", B, ())
        added = reopened.add(A, "c2", "new-1", 2.0, context=(("queue", "999"),))
        assert added.context == (("queue", "999"),)
        assert reopened._db.execute("PRAGMA user_version").fetchone() == (3,)
    finally:
        reopened.close()


def test_a_context_that_is_not_a_json_object_reads_as_none(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.sqlite3")
    box = Outbox.open(path)
    box.add(A, "c1", "r1", 1.0, context=(("queue", "999"),))
    box._db.execute("UPDATE requests SET context = '[1, 2]'")
    try:
        assert box.entries()[0].context == ()
    finally:
        box.close()
