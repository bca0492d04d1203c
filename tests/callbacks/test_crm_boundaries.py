"""The CRM client's answer classification at its edges: each HTTP status on
either side of a boundary (2xx, 401, 408, 429, 5xx), the body limit, and the
answers that are JSON but not what BGCRM sends. Which outcome an answer gets
decides whether delivery pauses for every request or retries only this one."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
from collections.abc import Callable

import pytest
import requests
import urllib3
from pytest_httpserver import HTTPServer

from stasis_dnd import __version__
from stasis_dnd.callbacks.crm import (
    CRM_WIDE,
    MESSAGE_LIMIT,
    CrmClient,
    CrmOutcome,
    CrmResult,
    _env_ca_bundle,
    _root_reason,
    check_settings,
)
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
    assert (result.outcome, result.detail, result.status) == (outcome, detail, 200)


# --- failures before an answer ------------------------------------------------------


def raising(exc: Exception) -> Callable[..., requests.Response]:
    def request(*args: object, **kwargs: object) -> requests.Response:
        raise exc

    return request


@pytest.mark.parametrize(
    ("exc", "outcome", "detail"),
    [
        (requests.exceptions.ConnectTimeout(), CrmOutcome.UNAVAILABLE, "no connection within 3s"),
        (requests.exceptions.ReadTimeout(), CrmOutcome.FAILED, "no answer in time"),
        (requests.exceptions.InvalidURL(), CrmOutcome.UNAVAILABLE, "invalid [crm] url"),
        (requests.exceptions.MissingSchema(), CrmOutcome.UNAVAILABLE, "invalid [crm] url"),
        (requests.exceptions.ProxyError(), CrmOutcome.UNAVAILABLE, "ProxyError"),
        (requests.exceptions.SSLError(), CrmOutcome.UNAVAILABLE, "TLS: SSLError"),
        (requests.exceptions.ChunkedEncodingError(), CrmOutcome.FAILED, "ChunkedEncodingError"),
    ],
)
def test_each_failure_before_an_answer_pauses_all_or_only_this_request(
    exc: Exception, outcome: CrmOutcome, detail: str
) -> None:
    # The client's own timeout, not the settings' (5 s), is the one it names.
    crm = CrmClient(CrmSettings(url="http://127.0.0.1:9"), timeout=3.0)
    crm._session.request = raising(exc)  # type: ignore[method-assign]
    assert crm.send("1", "r") == CrmResult(outcome, detail)


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
                conn.recv(65536)

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
    assert _env_ca_bundle() == ""
    monkeypatch.setenv("CURL_CA_BUNDLE", "/curl.pem")
    assert _env_ca_bundle() == "/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests.pem")
    assert _env_ca_bundle() == "/requests.pem"


def test_a_login_page_is_recognised_within_its_first_4096_characters(
    httpserver: HTTPServer,
) -> None:
    inside = answer(httpserver, 200, "x" * 4086 + "j_password")
    assert inside.outcome is CrmOutcome.BAD_CREDENTIALS
    past = answer(httpserver, 200, "x" * 4087 + "j_password")
    assert past.outcome is CrmOutcome.BAD_ANSWER


# --- answers no test server sends: raw HTTP over a socket ----------------------------


def raw_answer(reply: bytes, **client_options: int) -> CrmResult:
    """Send one request to a server that answers `reply` as it is, then closes."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

        thread = threading.Thread(target=serve)
        thread.start()
        crm = CrmClient(CrmSettings(url=f"http://127.0.0.1:{port}"), **client_options)
        result = crm.send("1", "r")
        thread.join()
    return result


def test_an_answer_without_a_content_type_says_so() -> None:
    result = raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
    assert result == CrmResult(CrmOutcome.BAD_ANSWER, "answer is not JSON (unknown type)", 200)


def test_an_answer_of_unknown_length_is_cut_off_past_the_limit() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    body = OK.encode() + b" " * 20000  # a few reads, each one under the limit
    result = raw_answer(head + body, body_limit=10000)
    assert result == CrmResult(CrmOutcome.BAD_ANSWER, "answer larger than 10000 bytes", 200)


def test_an_answer_of_many_reads_arrives_whole(httpserver: HTTPServer) -> None:
    body = '{"status":' + " " * 30000 + '"ok"}'
    assert answer(httpserver, 200, body).outcome is CrmOutcome.DELIVERED


def test_the_reason_is_found_through_urllib3s_reason_attribute() -> None:
    refused = OSError(111, "Connection refused")
    wrapped = urllib3.exceptions.MaxRetryError(None, "/admin?j_password=secret", reason=refused)  # type: ignore[arg-type]
    assert _root_reason(requests.exceptions.ConnectionError(wrapped)) == "Connection refused"


def test_a_chain_that_refers_back_to_itself_ends() -> None:
    first, second = ValueError(), KeyError()
    first.reason = second  # type: ignore[attr-defined]
    second.reason = first  # type: ignore[attr-defined]
    assert _root_reason(first) == "ValueError"


def test_a_tls_failure_names_urllib3s_reason() -> None:
    inner = urllib3.exceptions.SSLError("hostname 'x' doesn't match 'y'")
    crm = CrmClient(CrmSettings(url="http://127.0.0.1:9"), timeout=5.0)
    crm._session.request = raising(requests.exceptions.SSLError(inner))  # type: ignore[method-assign]
    assert crm.send("1", "r") == CrmResult(
        CrmOutcome.UNAVAILABLE, "TLS: hostname 'x' doesn't match 'y'"
    )


def test_a_broken_connection_without_an_os_reason_is_named_by_its_type_not_its_text() -> None:
    # urllib3's text holds the URL, which for GET holds the password.
    exc = requests.exceptions.ChunkedEncodingError("GET /run.do?j_password=secret broke")
    assert _root_reason(exc) == "ChunkedEncodingError"


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


# --- what goes out -------------------------------------------------------------------


class HeldServer:
    """A server that reads one request, sends `reply` (possibly nothing) and holds
    the connection open until the test is done with it."""

    def __init__(self, reply: bytes = b"", hold: float = 10.0) -> None:
        self.reply = reply
        self.hold = hold
        self.received = b""
        self.done = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            self.received = conn.recv(65536)
            conn.sendall(self.reply)
            self.done.wait(self.hold)

    def close(self) -> None:
        self.done.set()
        self._thread.join()
        self._server.close()


def test_a_call_s_own_timeout_wins_over_the_client_s() -> None:
    # Closed unanswered after 2 s: the client's 5 s would see that, not a timeout.
    server = HeldServer(hold=2.0)
    try:
        result = CrmClient(CrmSettings(url=server.url), timeout=5.0).send("1", "r", timeout=0.3)
    finally:
        server.close()
    assert result == CrmResult(CrmOutcome.FAILED, "no answer in time")


def test_an_endless_answer_is_cut_off_at_the_limit_not_read_to_its_end() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
    server = HeldServer(head + OK.encode() + b" " * 20000)
    try:
        crm = CrmClient(CrmSettings(url=server.url), timeout=3.0, body_limit=10000)
        result = crm.send("1", "r")
    finally:
        server.close()
    assert result == CrmResult(CrmOutcome.BAD_ANSWER, "answer larger than 10000 bytes", 200)


def test_post_goes_out_as_an_upper_case_method() -> None:
    server = HeldServer(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" + OK.encode())
    try:
        CrmClient(CrmSettings(url=server.url), timeout=3.0).send("1", "r")
    finally:
        server.close()
    assert server.received.startswith(b"POST /admin/dynamic.do HTTP/1.1\r\n")


def test_get_sends_no_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    settings = CrmSettings(url=httpserver.url_for(""), method="get")
    CrmClient(settings).send("1", "r")
    [(request, _)] = httpserver.log
    assert request.method == "GET"
    assert request.get_data() == b""
    assert request.args["aon"] == "1"


def test_a_request_that_cannot_be_encoded_is_a_bad_answer_not_an_exception(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    result = client(httpserver).send("\ud800", "r")
    assert result == CrmResult(CrmOutcome.BAD_ANSWER, "the request cannot be encoded as UTF-8")


def test_an_answer_cut_short_fails_only_this_request() -> None:
    server = HeldServer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"status"')
    try:
        crm = CrmClient(CrmSettings(url=server.url), timeout=3.0)
        server.done.set()  # close right after the partial answer
        result = crm.send("1", "r")
    finally:
        server.close()
    assert result.outcome is CrmOutcome.FAILED
    # The reason comes from the exception requests raised, not from nothing.
    assert result.detail not in ("", "NoneType")


def test_params_without_a_request_id_name_none() -> None:
    names = [name for name, _ in CrmClient(CrmSettings()).params("1")]
    assert "requestId" not in names
    assert "aon" in names


def test_the_environment_is_read_once_when_the_client_is_made(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    crm = client(httpserver)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # set later: not used
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    assert crm.send("1", "r").delivered


def test_the_password_is_masked_also_as_a_url_encodes_it(httpserver: HTTPServer) -> None:
    settings = CrmSettings(url=httpserver.url_for(""), username="u", password="pa ss/wd")
    message = json.dumps({"status": "error", "message": "bad pa%20ss%2Fwd"})
    httpserver.expect_request(ANY_PATH).respond_with_data(message)
    assert CrmClient(settings).send("1", "r").detail == "bad ***"


# --- settings and identity -----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"style": "soap"}, "[crm] style must be one of dynamic, run"),
        ({"method": "put"}, "[crm] method must be one of post, get"),
        ({"phone_param": ""}, "[crm] phone_param must name the parameter for the caller's number"),
        ({"params": (("sub", "x"),)}, "[crm] params: 'sub' is already sent by stasis-dnd"),
    ],
)
def test_settings_that_cannot_make_a_request_are_named(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        check_settings(dataclasses.replace(CrmSettings(), **changes))  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_a_param_named_sub_is_free_when_no_sub_is_sent() -> None:
    check_settings(CrmSettings(sub="", params=(("sub", "x"),)))


def test_the_client_names_its_endpoint_without_userinfo() -> None:
    crm = CrmClient(CrmSettings(url="http://u:pw@crm.example/X/", username="dnd"))
    assert crm.url == "http://crm.example/X/admin/dynamic.do"
    assert repr(crm) == "CrmClient(url='http://crm.example/X/admin/dynamic.do', username='dnd')"


def test_requests_say_who_sends_them(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    client(httpserver).send("1", "r")
    [(request, _)] = httpserver.log
    assert request.headers["User-Agent"] == f"stasis-dnd/{__version__}"


def test_a_proxy_of_the_environment_is_used(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    result = client(httpserver).send("1", "r")
    assert result.outcome is CrmOutcome.UNAVAILABLE
    assert httpserver.log == []


def test_a_password_of_the_shortest_masked_length_is_masked(httpserver: HTTPServer) -> None:
    settings = CrmSettings(url=httpserver.url_for(""), username="u", password="abcd")
    message = json.dumps({"status": "error", "message": "bad abcd"})
    httpserver.expect_request(ANY_PATH).respond_with_data(message)
    assert CrmClient(settings).send("1", "r").detail == "bad ***"
