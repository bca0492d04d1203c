"""The CRM client against the emulator: what is sent, and how every kind of
answer is classified (as a value, never an exception)."""

from __future__ import annotations

import dataclasses
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stasis_dnd.callbacks.crm import MESSAGE_LIMIT, CrmClient, CrmOutcome
from stasis_dnd.settings import CrmSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import (
    CUT,
    HUGE,
    INVALID_JSON,
    LOGIN_PAGE_REPLY,
    SERVER_ERROR,
    Reply,
    error,
    http_status,
    slow,
)

PASSWORD = "pa ss+w&rd=1"  # characters that need encoding


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator("dnd", PASSWORD) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(crm: CrmEmulator) -> Iterator[None]:
    crm.clear()
    yield
    crm.restore()  # after an outage test
    crm.check()


def settings_for(crm: CrmEmulator, **changes: object) -> CrmSettings:
    base = CrmSettings(url=crm.url, username="dnd", password=PASSWORD, timeout=5.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["dynamic", "run"])
@pytest.mark.parametrize("method", ["post", "get"])
def test_delivered_in_both_styles_and_methods(crm: CrmEmulator, style: str, method: str) -> None:
    client = CrmClient(settings_for(crm, style=style, method=method))
    result = client.send("+79001234567", "req-1")
    assert result.outcome is CrmOutcome.DELIVERED
    assert result.delivered
    received = crm.requests[0]
    assert received.method == method.upper()
    assert received.path == {"dynamic": "/admin/dynamic.do", "run": "/admin/run.do"}[style]
    assert received.param("aon") == "+79001234567"
    assert received.param("sub") == "dndoperator"
    assert received.param("responseType") == "json"
    assert received.param("authToSession") == "0"
    assert received.param("j_password") == PASSWORD
    assert received.request_id == "req-1"
    assert "callback" not in received.names()


def test_post_keeps_everything_out_of_the_url(crm: CrmEmulator) -> None:
    CrmClient(settings_for(crm)).send("+79001234567", "r")
    assert crm.requests[0].url_params == ()


def test_get_for_old_setups_puts_parameters_in_the_url(crm: CrmEmulator) -> None:
    CrmClient(settings_for(crm, method="get")).send("+79001234567", "r")
    assert dict(crm.requests[0].url_params)["aon"] == "+79001234567"


def test_extra_params_and_request_id_name(crm: CrmEmulator) -> None:
    client = CrmClient(
        settings_for(
            crm,
            params=(("queue", "999"), ("note", "a&b=c")),
            request_id_param="dedupKey",
            phone_param="phone",
            sub="",
        )
    )
    client.send("100", "abc")
    received = crm.requests[0]
    assert received.param("queue") == "999"
    assert received.param("note") == "a&b=c"
    assert received.param("dedupKey") == "abc"
    assert received.param("phone") == "100"
    assert received.param("sub") is None
    assert received.param("aon") is None


def test_request_id_can_be_turned_off(crm: CrmEmulator) -> None:
    CrmClient(settings_for(crm, request_id_param="")).send("100", "abc")
    assert "abc" not in [value for _, value in crm.requests[0].params]


@pytest.mark.parametrize("name", ["callback", "Callback", "j_password", "responseType", "aon"])
def test_params_that_would_break_the_request_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"\[crm\]"):
        CrmClient(CrmSettings(params=((name, "x"),)))


def test_phone_param_named_callback_is_rejected() -> None:
    with pytest.raises(ValueError, match="used by the CRM protocol"):
        CrmClient(CrmSettings(phone_param="callback"))


# Hypothesis: whatever the number holds, every other parameter arrives unchanged.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    phone=st.text(st.characters(codec="utf-8"), max_size=40)
    | st.from_regex(r"[+ 0-9&=%#?;]{0,20}", fullmatch=True),
    style=st.sampled_from(["dynamic", "run"]),
    method=st.sampled_from(["post", "get"]),
)
def test_the_number_never_changes_another_parameter(
    crm: CrmEmulator, phone: str, style: str, method: str
) -> None:
    crm.clear()
    client = CrmClient(settings_for(crm, style=style, method=method, params=(("x", "1"),)))
    try:
        assert client.send(phone, "rid").delivered
    finally:
        client.close()
    received = crm.requests[-1]
    expected = [(n, v) for n, v in client.params("", "rid") if n != "aon"]
    assert [(n, v) for n, v in received.params if n != "aon"] == expected
    assert received.param("aon") == phone
    assert received.names().count("aon") == 1


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(phone=st.text(st.characters(categories=["Cs", "Nd", "Sm"]), max_size=10))
def test_send_never_raises(crm: CrmEmulator, phone: str) -> None:
    # Lone surrogates (from a JSON escape) cannot be sent: a value, not a crash.
    client = CrmClient(settings_for(crm))
    try:
        result = client.send(phone, "rid")
    finally:
        client.close()
    assert result.delivered or result.outcome is CrmOutcome.BAD_ANSWER


def test_plus_arrives_as_plus(crm: CrmEmulator) -> None:
    for method in ("post", "get"):
        CrmClient(settings_for(crm, method=method)).send("+7 (900) 123-45-67", "r")
    assert [r.param("aon") for r in crm.requests] == ["+7 (900) 123-45-67"] * 2


def test_wrong_password_is_bad_credentials(crm: CrmEmulator) -> None:
    result = CrmClient(settings_for(crm, password="wrong-one")).send("1", "r")
    assert result.outcome is CrmOutcome.BAD_CREDENTIALS
    assert result.status == 401


def test_login_page_is_bad_credentials(crm: CrmEmulator) -> None:
    crm.script(LOGIN_PAGE_REPLY)
    result = CrmClient(settings_for(crm)).send("1", "r")
    assert result.outcome is CrmOutcome.BAD_CREDENTIALS
    assert "login page" in result.detail


def test_status_error_is_refused_with_a_trimmed_message(crm: CrmEmulator) -> None:
    trace = "java.lang.NullPointerException: phone\n" + "\tat ru.bgcrm.Foo(Foo.java:1)\n" * 200
    crm.script(error(trace))
    result = CrmClient(settings_for(crm)).send("1", "r")
    assert result.outcome is CrmOutcome.REFUSED
    assert result.detail.startswith("java.lang.NullPointerException: phone at ru.bgcrm.Foo")
    assert len(result.detail) <= MESSAGE_LIMIT
    assert "\n" not in result.detail


# (reply, outcome, detail): which answers pause delivery for every request
# (`crm_wide`) and which concern only the request that got them.
ANSWERS = [
    (http_status(401), CrmOutcome.BAD_CREDENTIALS, "HTTP 401 (login failed)"),
    (LOGIN_PAGE_REPLY, CrmOutcome.BAD_CREDENTIALS, "the CRM answered with its login page"),
    (http_status(429), CrmOutcome.UNAVAILABLE, "HTTP 429 (too many requests)"),
    (http_status(408), CrmOutcome.FAILED, "HTTP 408"),
    (SERVER_ERROR, CrmOutcome.FAILED, "HTTP 500"),
    (http_status(502), CrmOutcome.FAILED, "HTTP 502"),
    (http_status(503), CrmOutcome.FAILED, "HTTP 503"),
    (CUT, CrmOutcome.FAILED, "Remote end closed connection without response"),
    (http_status(302), CrmOutcome.BAD_ANSWER, "HTTP 302 to /login"),
    (http_status(404), CrmOutcome.BAD_ANSWER, "HTTP 404"),
    (http_status(400), CrmOutcome.BAD_ANSWER, "HTTP 400"),
    (INVALID_JSON, CrmOutcome.BAD_ANSWER, "answer is not JSON (application/json)"),
    (error("java.lang.NullPointerException"), CrmOutcome.REFUSED, "java.lang.NullPointerException"),
]


@pytest.mark.parametrize(
    ("reply", "outcome", "detail"), ANSWERS, ids=[f"{r.kind}-{r.status}" for r, _, _ in ANSWERS]
)
def test_each_answer_is_classified_crm_wide_or_for_this_request_only(
    crm: CrmEmulator, reply: Reply, outcome: CrmOutcome, detail: str
) -> None:
    crm.script(reply)
    result = CrmClient(settings_for(crm)).send("1", "r")
    assert (result.outcome, result.detail) == (outcome, detail)
    assert result.crm_wide is (outcome in (CrmOutcome.BAD_CREDENTIALS, CrmOutcome.UNAVAILABLE))


def test_slow_answer_failed_this_request(crm: CrmEmulator) -> None:
    # Sent, then no answer in time: this request may be what the CRM chokes on.
    crm.script(slow(5))
    result = CrmClient(settings_for(crm, timeout=0.2)).send("1", "r")
    assert (result.outcome, result.detail, result.crm_wide) == (
        CrmOutcome.FAILED,
        "no answer in time",
        False,
    )


def test_unknown_host_is_crm_wide() -> None:
    client = CrmClient(CrmSettings(url="http://crm.invalid", username="u", password="p"))
    result = client.send("1", "r")
    assert (result.outcome, result.crm_wide) == (CrmOutcome.UNAVAILABLE, True)
    assert result.detail == "Name or service not known"


def test_refused_connection_is_unavailable_and_hides_the_password(crm: CrmEmulator) -> None:
    crm.outage()
    for method in ("post", "get"):
        client = CrmClient(settings_for(crm, method=method, password="hunter22"))
        result = client.send("1", "r")
        assert (result.outcome, result.crm_wide) == (CrmOutcome.UNAVAILABLE, True)
        assert result.detail == "Connection refused"
        assert "hunter22" not in repr(result) + str(result) + repr(client)


def test_huge_answer_is_a_bad_answer_not_a_crash(crm: CrmEmulator) -> None:
    crm.script(HUGE)
    result = CrmClient(settings_for(crm), body_limit=1000).send("1", "r")
    assert result.outcome is CrmOutcome.BAD_ANSWER
    assert "larger than 1000 bytes" in result.detail


def test_invalid_json_is_a_bad_answer(crm: CrmEmulator) -> None:
    crm.script(INVALID_JSON)
    result = CrmClient(settings_for(crm)).send("1", "r")
    assert result.outcome is CrmOutcome.BAD_ANSWER
    assert "not JSON" in result.detail


def test_unknown_class_is_refused(crm: CrmEmulator) -> None:
    result = CrmClient(settings_for(crm, class_name="ru.bgcrm.NoSuch")).send("1", "r")
    assert result.outcome is CrmOutcome.REFUSED
    assert "ru.bgcrm.NoSuch" in result.detail


def test_base_url_with_a_context_path(crm: CrmEmulator) -> None:
    assert CrmClient(settings_for(crm, url=crm.url + "/bgerp/")).send("1", "r").delivered
    assert crm.requests[0].path == "/bgerp/admin/dynamic.do"


def test_repr_and_settings_never_show_the_password(crm: CrmEmulator) -> None:
    client = CrmClient(settings_for(crm))
    assert PASSWORD not in repr(client)
    assert PASSWORD not in repr(client.settings)


def test_one_keep_alive_connection_for_many_requests(crm: CrmEmulator) -> None:
    client = CrmClient(settings_for(crm))
    for n in range(3):
        assert client.send(str(n), f"r{n}").delivered
    # Three requests over one socket: the emulator saw one client port.
    assert len({r.client_port for r in crm.requests}) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "crm.pem", where / "crm.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_is_verified_against_the_configured_ca_bundle(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with CrmEmulator("dnd", PASSWORD, tls=context) as crm:
        trusted = CrmClient(settings_for(crm, ca_bundle=str(cert)))
        assert trusted.send("1", "r").delivered
        untrusted = CrmClient(settings_for(crm)).send("1", "r")
        assert (untrusted.outcome, untrusted.crm_wide) == (CrmOutcome.UNAVAILABLE, True)
        assert untrusted.detail.startswith("TLS: ")
        assert len(crm.delivered()) == 1
