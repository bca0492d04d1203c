"""The CRM client's answer classification at its edges: each HTTP status on
either side of a boundary (2xx, 401, 408, 429, 5xx), the body limit, and the
answers that are JSON but not what BGCRM sends. Which outcome an answer gets
decides whether delivery pauses for every request or retries only this one."""

from __future__ import annotations

import json
import re

import pytest
from pytest_httpserver import HTTPServer

from stasis_dnd.callbacks.crm import CRM_WIDE, CrmClient, CrmOutcome, CrmResult
from stasis_dnd.settings import CrmSettings

OK = json.dumps({"status": "ok"})
ANY_PATH = re.compile(".*")


def client(server: HTTPServer) -> CrmClient:
    settings = CrmSettings(url=server.url_for(""), username="u", password="secret-pw")
    return CrmClient(settings, timeout=5.0)


def answer(server: HTTPServer, status: int, body: str = OK, **headers: str) -> CrmResult:
    server.clear()
    server.expect_request(ANY_PATH).respond_with_data(
        body, status=status, headers=headers, content_type="application/json"
    )
    return client(server).send("+79001234567", "r1")


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
    assert (result.outcome, result.detail) == (outcome, detail)
