"""Hostile Stasis() arguments on their way to the CRM, in process: whatever
the dialplan passes (`&`, `=`, `%`, newlines, NUL, very long text), the CRM
request has exactly the configured parameter names, each value clean."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stasis_dnd.callbacks.crm import CrmClient
from stasis_dnd.core import CallFlow, Channel, RequestCallback, StasisStart
from stasis_dnd.core.context import MAX_VALUE
from stasis_dnd.settings import CrmSettings, IvrSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAPPING = (
    ("queue", "queue"),
    ("reason", "reason"),
    ("waited", "waited_seconds"),
    ("line", "dialled"),
    ("language", "language"),
    ("call_id", "linkedid"),
    ("prof", "profile"),
)
BASE = {"action", "class", "sub", "aon", "requestId", "responseType", "authToSession"}
BASE |= {"j_username", "j_password"}
NASTY = st.sampled_from(
    ["&aon=+70000000000", "a=b", "%26%3D", "\r\nX-Evil: 1", "\x00", "9" * 500, "callback=x", ""]
)
VALUE = st.one_of(
    NASTY, st.text(st.characters(codec="utf-8"), max_size=200), st.lists(NASTY).map("".join)
)
ARG = st.one_of(
    VALUE,
    st.builds(
        "{}={}".format,
        st.sampled_from(["queue", "waited", "dialled", "linkedid", "aon", "profile"]),
        VALUE,
    ),
)


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator("dnd", "pw") as emulator:
        yield emulator


@EXAMPLES
@given(args=st.lists(ARG, max_size=8), first=st.one_of(VALUE, st.just("breakout")))
def test_the_crm_gets_the_configured_names_and_clean_values(
    crm: CrmEmulator, args: list[str], first: str
) -> None:
    crm.clear()
    flow = CallFlow(IvrSettings(answer_pause=0, readback=False))
    channel = Channel("1700000000.1", "Up", "", "+79001234567", "ru")
    commands = flow.handle(StasisStart(channel, ("breakout", "1", first, *args)))
    [request] = [c for c in commands if isinstance(c, RequestCallback)]
    client = CrmClient(
        CrmSettings(url=crm.url, username="dnd", password="pw", context_params=MAPPING)
    )
    try:
        assert client.send(request.phone, "rid", context=request.context).delivered
    finally:
        client.close()
    [received] = crm.requests
    facts = dict(request.context)
    expected = BASE | {name for name, fact in MAPPING if facts.get(fact)}
    assert sorted(received.names()) == sorted(expected)
    assert received.param("aon") == "+79001234567"
    # The name of the profile that served the call, never the text the dialplan gave.
    assert received.param("prof") == "default"
    for name, fact in MAPPING:
        value = received.param(name)
        if value is None:
            continue
        assert value == facts[fact]
        assert 0 < len(value) <= MAX_VALUE
        assert not any(unicodedata.category(ch)[0] == "C" for ch in value), (name, value)
