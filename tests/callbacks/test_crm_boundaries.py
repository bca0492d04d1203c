"""The CRM client's answer classification at its edges: each HTTP status on
either side of a boundary (2xx, 401, 408, 429, 5xx), the body limit, the
answers that are not an ok, and each failure before an answer. Which outcome an answer gets
decides whether delivery pauses for every request or retries only this one."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading

import pytest
from crm_servers import ANY_PATH, OK, answer, client, connect_failed, raising, read_request
from pytest_httpserver import HTTPServer

from stasis_dnd.callbacks.crm import (
    CRM_WIDE,
    MESSAGE_LIMIT,
    CrmClient,
    CrmOutcome,
    CrmResult,
)
from stasis_dnd.callbacks.crm_transport import env_ca_bundle
from stasis_dnd.settings import CrmSettings


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, CrmOutcome.DELIVERED),
        (299, CrmOutcome.DELIVERED),
        (300, CrmOutcome.BAD_ANSWER),
        (400, CrmOutcome.BAD_ANSWER),
        (401, CrmOutcome.BAD_CREDENTIALS),
        (402, CrmOutcome.BAD_ANSWER),
        (407, CrmOutcome.BAD_ANSWER),
        (408, CrmOutcome.FAILED),
        (409, CrmOutcome.BAD_ANSWER),
        (428, CrmOutcome.BAD_ANSWER),
        (429, CrmOutcome.UNAVAILABLE),
        (430, CrmOutcome.BAD_ANSWER),
        (499, CrmOutcome.BAD_ANSWER),
        (500, CrmOutcome.FAILED),
        (501, CrmOutcome.FAILED),
        (599, CrmOutcome.FAILED),
    ],
)
def test_each_status_on_either_side_of_a_boundary(
    httpserver: HTTPServer, status: int, outcome: CrmOutcome
) -> None:
    result = answer(httpserver, status)
    assert result.outcome is outcome
    assert result.status == status
    assert result.delivered is (outcome is CrmOutcome.DELIVERED)


def test_only_credentials_and_unavailability_pause_every_request() -> None:
    assert {CrmOutcome.BAD_CREDENTIALS, CrmOutcome.UNAVAILABLE} == CRM_WIDE
    for outcome in CrmOutcome:
        assert CrmResult(outcome).crm_wide is (outcome in CRM_WIDE)


def test_a_result_reads_as_its_outcome_and_detail() -> None:
    assert str(CrmResult(CrmOutcome.FAILED, "HTTP 502", 502)) == "failed: HTTP 502"
    assert str(CrmResult(CrmOutcome.DELIVERED)) == "delivered"


def test_a_redirect_names_where_it_points(httpserver: HTTPServer) -> None:
    result = answer(httpserver, 302, "", Location="http://elsewhere/login")
    assert result.outcome is CrmOutcome.BAD_ANSWER
    assert result.detail == "HTTP 302 to http://elsewhere/login"
    assert answer(httpserver, 303, "").detail == "HTTP 303"


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_not(
    httpserver: HTTPServer,
) -> None:
    body = OK + " " * 100
    httpserver.expect_request(ANY_PATH).respond_with_data(body, content_type="application/json")
    exact = CrmClient(client(httpserver).settings, body_limit=len(body))
    assert exact.send("1", "r").outcome is CrmOutcome.DELIVERED
    short = CrmClient(client(httpserver).settings, body_limit=len(body) - 1)
    result = short.send("1", "r")
    assert result.outcome is CrmOutcome.BAD_ANSWER
    assert result.detail == f"answer larger than {len(body) - 1} bytes"


@pytest.mark.parametrize(
    ("body", "outcome", "detail"),
    [
        ('{"status": "error", "message": "no such class"}', CrmOutcome.REFUSED, "no such class"),
        ('{"status": "error"}', CrmOutcome.REFUSED, "the CRM reported an error"),
        ('{"status": "OK"}', CrmOutcome.BAD_ANSWER, "unexpected status 'OK'"),
        ("{}", CrmOutcome.BAD_ANSWER, "unexpected status None"),
        ('["ok"]', CrmOutcome.BAD_ANSWER, "answer is JSON but not an object"),
        ('cb({"status": "ok"})', CrmOutcome.BAD_ANSWER, "answer is JSONP, not JSON"),
        (
            '<form><input name="j_password"></form>',
            CrmOutcome.BAD_CREDENTIALS,
            "the CRM answered with its login page",
        ),
        (
            '<input type="password">',
            CrmOutcome.BAD_CREDENTIALS,
            "the CRM answered with its login page",
        ),
        ("<html>busy</html>", CrmOutcome.BAD_ANSWER, "answer is not JSON (application/json)"),
    ],
)
def test_answers_that_are_not_an_ok(
    httpserver: HTTPServer, body: str, outcome: CrmOutcome, detail: str
) -> None:
    result = answer(httpserver, 200, body)
    assert (result.outcome, result.detail, result.status) == (outcome, detail, 200)


# --- failures before an answer ------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "outcome", "detail"),
    [
        (connect_failed(TimeoutError()), CrmOutcome.UNAVAILABLE, "no connection within 3s"),
        (TimeoutError(), CrmOutcome.FAILED, "no answer in time"),
        (
            connect_failed(OSError("Tunnel connection failed: 407 Proxy Authentication Required")),
            CrmOutcome.UNAVAILABLE,
            "Tunnel connection failed: 407 Proxy Authentication Required",
        ),
        (ssl.SSLError(), CrmOutcome.UNAVAILABLE, "TLS: SSLError"),
        (connect_failed(ssl.SSLError()), CrmOutcome.UNAVAILABLE, "TLS: SSLError"),
        (http.client.IncompleteRead(b""), CrmOutcome.FAILED, "IncompleteRead"),
    ],
)
def test_each_failure_before_an_answer_pauses_all_or_only_this_request(
    exc: Exception, outcome: CrmOutcome, detail: str
) -> None:
    # The client's own timeout, not the settings' (5 s), is the one it names.
    crm = CrmClient(CrmSettings(url="http://127.0.0.1:9"), timeout=3.0)
    crm._pool.exchange = raising(exc)  # type: ignore[method-assign,union-attr]
    assert crm.send("1", "r") == CrmResult(outcome, detail)


@pytest.mark.parametrize("url", ["crm.example/bgerp", "http://", "ftp://crm.example/"])
def test_a_url_that_cannot_be_requested_pauses_all(url: str) -> None:
    result = CrmClient(CrmSettings(url=url), timeout=3.0).send("1", "r")
    assert result == CrmResult(CrmOutcome.UNAVAILABLE, "invalid [crm] url")


def test_a_refused_connection_says_so_without_the_url() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = CrmClient(CrmSettings(url=f"http://127.0.0.1:{port}")).send("1", "r")
    assert result == CrmResult(CrmOutcome.UNAVAILABLE, "Connection refused")


def test_a_connection_closed_without_an_answer_fails_only_this_request() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def hang_up() -> None:
            conn, _ = server.accept()
            with conn:
                read_request(conn)

        thread = threading.Thread(target=hang_up)
        thread.start()
        result = CrmClient(CrmSettings(url=f"http://127.0.0.1:{port}")).send("1", "r")
        thread.join()
    assert result == CrmResult(CrmOutcome.FAILED, "Remote end closed connection without response")


def test_the_probe_logs_in_and_names_no_class(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data('{"status": "error"}')
    result = client(httpserver).probe()
    assert result.outcome is CrmOutcome.REFUSED
    [(request, _)] = httpserver.log
    assert list(request.form.items(multi=True)) == [
        ("action", "runDynamicClass"),
        ("responseType", "json"),
        ("authToSession", "0"),
        ("j_username", "u"),
        ("j_password", "secret-pw"),
    ]


def test_the_ca_bundle_of_the_environment_is_requests_then_curl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert env_ca_bundle() == ""
    monkeypatch.setenv("CURL_CA_BUNDLE", "/curl.pem")
    assert env_ca_bundle() == "/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests.pem")
    assert env_ca_bundle() == "/requests.pem"


def test_a_login_page_is_recognised_within_its_first_4096_characters(
    httpserver: HTTPServer,
) -> None:
    inside = answer(httpserver, 200, "x" * 4086 + "j_password")
    assert inside.outcome is CrmOutcome.BAD_CREDENTIALS
    past = answer(httpserver, 200, "x" * 4087 + "j_password")
    assert past.outcome is CrmOutcome.BAD_ANSWER


def test_an_ok_answer_has_no_detail(httpserver: HTTPServer) -> None:
    assert answer(httpserver, 200) == CrmResult(CrmOutcome.DELIVERED, "", 200)


def test_an_answer_that_is_not_utf8_is_a_bad_answer_not_an_exception(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(b"\xff\xfe{", content_type="text/html")
    result = client(httpserver).send("1", "r")
    assert result == CrmResult(CrmOutcome.BAD_ANSWER, "answer is not JSON (text/html)", 200)


def test_the_crm_message_is_cut_to_the_limit_with_an_ellipsis(httpserver: HTTPServer) -> None:
    exact = "m" * MESSAGE_LIMIT
    refused = json.dumps({"status": "error", "message": exact})
    assert answer(httpserver, 200, refused).detail == exact
    longer = json.dumps({"status": "error", "message": exact + "m"})
    assert answer(httpserver, 200, longer).detail == "m" * (MESSAGE_LIMIT - 1) + "…"


def test_the_password_is_masked_in_the_crm_message(httpserver: HTTPServer) -> None:
    message = "login secret-pw failed for /run.do?j_password=other&x=1"
    refused = json.dumps({"status": "error", "message": message})
    detail = answer(httpserver, 200, refused).detail
    assert detail == "login *** failed for /run.do?j_password=***&x=1"


def test_a_request_without_an_id_sends_none(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    client(httpserver).send("1")
    [(request, _)] = httpserver.log
    assert "requestId" not in request.form
