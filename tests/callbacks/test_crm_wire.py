"""The CRM client on the wire: answers no test server sends (raw HTTP over a
socket), what goes out (method, body, timeouts, proxies, the User-Agent),
the reasons it gives for broken connections without secrets, and the
settings it refuses with one sentence each."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl

import pytest
import requests
import urllib3
from crm_servers import (
    ANY_PATH,
    OK,
    HeldServer,
    answer,
    client,
    connect_failed,
    raising,
    raw_answer,
)
from pytest_httpserver import HTTPServer

from stasis_dnd import __version__
from stasis_dnd.callbacks.crm import (
    CrmClient,
    CrmOutcome,
    CrmResult,
    check_settings,
)
from stasis_dnd.callbacks.crm_transport import root_reason
from stasis_dnd.settings import CrmSettings

# --- answers no test server sends: raw HTTP over a socket ----------------------------


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
    assert root_reason(requests.exceptions.ConnectionError(wrapped)) == "Connection refused"


def test_a_chain_that_refers_back_to_itself_ends() -> None:
    first, second = ValueError(), KeyError()
    first.reason = second  # type: ignore[attr-defined]
    second.reason = first  # type: ignore[attr-defined]
    assert root_reason(first) == "ValueError"


def test_a_tls_failure_names_the_tls_reason() -> None:
    inner = ssl.SSLError("hostname 'x' doesn't match 'y'")
    crm = CrmClient(CrmSettings(url="http://127.0.0.1:9"), timeout=5.0)
    crm._pool.exchange = raising(connect_failed(inner))  # type: ignore[method-assign,union-attr]
    assert crm.send("1", "r") == CrmResult(
        CrmOutcome.UNAVAILABLE, "TLS: hostname 'x' doesn't match 'y'"
    )


def test_a_broken_connection_without_an_os_reason_is_named_by_its_type_not_its_text() -> None:
    # urllib3's text holds the URL, which for GET holds the password.
    exc = requests.exceptions.ChunkedEncodingError("GET /run.do?j_password=secret broke")
    assert root_reason(exc) == "ChunkedEncodingError"


# --- what goes out -------------------------------------------------------------------


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
    # The reason comes from the exception the transport raised, not from nothing.
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


def test_a_login_in_the_url_goes_as_basic_auth(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    url = httpserver.url_for("").replace("://", "://crm%20user:p%40ss@")
    assert CrmClient(CrmSettings(url=url), timeout=5.0).send("1", "r").delivered
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == "Basic Y3JtIHVzZXI6cEBzcw=="  # crm user:p@ss


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


def test_the_url_s_path_is_quoted_as_requests_quoted_it(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    url = httpserver.url_for("/my crm/x;v=1,@b")
    assert CrmClient(CrmSettings(url=url), timeout=5.0).send("1", "r").delivered
    [(request, _)] = httpserver.log
    assert request.environ["RAW_URI"] == "/my%20crm/x;v=1,@b/admin/dynamic.do"


def test_close_closes_the_kept_connection() -> None:
    server = HeldServer(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" + OK.encode())
    try:
        crm = CrmClient(CrmSettings(url=server.url), timeout=3.0)
        assert crm.send("1", "r").delivered
        crm.close()
        assert server.closed_by_client.wait(5)
    finally:
        server.close()


def test_a_client_that_cannot_make_requests_closes_without_an_error() -> None:
    CrmClient(CrmSettings(url="crm.example")).close()


def test_an_answer_cut_short_says_so() -> None:
    server = HeldServer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"status"')
    try:
        crm = CrmClient(CrmSettings(url=server.url), timeout=3.0)
        server.done.set()  # close right after the partial answer
        result = crm.send("1", "r")
    finally:
        server.close()
    assert result == CrmResult(CrmOutcome.FAILED, "the answer ended before its Content-Length")
