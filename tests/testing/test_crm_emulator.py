"""The CRM emulator speaks BGERP's contract (docs/crm-contract.md), checked with
plain `requests`, so client tests against it mean something."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import (
    CUT,
    HUGE,
    HUGE_BYTES,
    INVALID_JSON,
    LOGIN_PAGE_REPLY,
    SERVER_ERROR,
    Received,
    Reply,
    error,
    http_status,
    slow,
)

CLASS = "ru.bgcrm.dyn.utils.asterisk.AsteriskIn"
GOOD = {"j_username": "crm", "j_password": "s3cret"}


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    with CrmEmulator("crm", "s3cret") as emulator:
        yield emulator
        emulator.check()


def dynamic(**params: str) -> dict[str, str]:
    return {"action": "runDynamicClass", "class": CLASS, "responseType": "json", **params}


def test_ok_answer_has_bgerp_shape(crm: CrmEmulator) -> None:
    answer = requests.post(f"{crm.url}/admin/dynamic.do", data=dynamic(**GOOD), timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "message": "", "data": {}, "eventList": []}


def test_run_style_endpoint(crm: CrmEmulator) -> None:
    params = {"method": "runClass", "iface": "event", "class": CLASS, "responseType": "json"}
    answer = requests.get(f"{crm.url}/admin/run.do", params={**params, **GOOD}, timeout=5)
    assert answer.json()["status"] == "ok"
    assert crm.requests[0].method == "GET"
    assert crm.requests[0].path == "/admin/run.do"


def test_wrong_action_is_not_found(crm: CrmEmulator) -> None:
    params = dynamic(**GOOD) | {"action": "other"}
    assert requests.post(f"{crm.url}/admin/dynamic.do", data=params, timeout=5).status_code == 404


def test_bad_login_with_json_is_401_text(crm: CrmEmulator) -> None:
    params = dynamic(j_username="crm", j_password="wrong")
    answer = requests.post(f"{crm.url}/admin/dynamic.do", data=params, timeout=5)
    assert answer.status_code == 401
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.text == "Login failed"


def test_bad_login_without_response_type_is_login_page(crm: CrmEmulator) -> None:
    params = {"action": "runDynamicClass", "class": CLASS, "j_username": "x", "j_password": "y"}
    answer = requests.post(f"{crm.url}/admin/dynamic.do", data=params, timeout=5)
    assert answer.status_code == 200
    assert "text/html" in answer.headers["Content-Type"]
    assert 'name="j_password"' in answer.text


def test_error_on_demand_then_ok_again(crm: CrmEmulator) -> None:
    crm.script(error("java.lang.IllegalStateException: no such sub"))
    url = f"{crm.url}/admin/dynamic.do"
    first = requests.post(url, data=dynamic(**GOOD), timeout=5)
    second = requests.post(url, data=dynamic(**GOOD), timeout=5)
    assert (first.status_code, first.json()) == (
        200,
        {"status": "error", "message": "java.lang.IllegalStateException: no such sub"},
    )
    assert second.json()["status"] == "ok"
    assert [r.answer for r in crm.requests] == ["error", "ok"]


def test_unknown_class_is_an_error(crm: CrmEmulator) -> None:
    params = dynamic(**GOOD) | {"class": "no.such.Class"}
    answer = requests.post(f"{crm.url}/admin/dynamic.do", data=params, timeout=5)
    assert answer.json()["status"] == "error"
    assert "no.such.Class" in answer.json()["message"]


def test_callback_parameter_makes_jsonp(crm: CrmEmulator) -> None:
    params = dynamic(**GOOD, callback="cb")
    answer = requests.post(f"{crm.url}/admin/dynamic.do", data=params, timeout=5)
    assert answer.text.startswith("cb({") and answer.text.endswith("})")
    assert crm.requests[0].answer == "jsonp"
    assert crm.delivered_ids() == []


def test_faults_on_demand(crm: CrmEmulator) -> None:
    crm.script(SERVER_ERROR, INVALID_JSON, HUGE)
    url = f"{crm.url}/admin/dynamic.do"
    assert requests.post(url, data=dynamic(**GOOD), timeout=5).status_code == 500
    with pytest.raises(ValueError):
        requests.post(url, data=dynamic(**GOOD), timeout=5).json()
    assert len(requests.post(url, data=dynamic(**GOOD), timeout=5).content) > HUGE_BYTES
    assert requests.post(url, data=dynamic(**GOOD), timeout=5).json()["status"] == "ok"


def test_one_number_answered_its_own_way_forever_without_using_the_script(
    crm: CrmEmulator,
) -> None:
    crm.for_number("+79000000001", SERVER_ERROR)
    crm.script(error("scripted"))
    url = f"{crm.url}/admin/dynamic.do"

    def status_for(phone: str) -> int:
        return requests.post(url, data=dynamic(aon=phone, **GOOD), timeout=5).status_code

    assert [status_for("+79000000001") for _ in range(3)] == [500, 500, 500]
    other = requests.post(url, data=dynamic(aon="+79000000002", **GOOD), timeout=5)
    assert other.json() == {"status": "error", "message": "scripted"}  # the script was kept
    assert status_for("+79000000002") == 200
    assert status_for("+79000000001") == 500
    assert [r.answer for r in crm.requests_for("+79000000001")] == ["server_error"] * 4
    crm.clear()  # forgets the rule
    assert status_for("+79000000001") == 200


def test_any_http_status_and_a_cut_connection_on_demand(crm: CrmEmulator) -> None:
    crm.script(http_status(302), http_status(429), CUT)
    url = f"{crm.url}/admin/dynamic.do"
    moved = requests.post(url, data=dynamic(**GOOD), timeout=5, allow_redirects=False)
    assert (moved.status_code, moved.headers["Location"]) == (302, "/login")
    assert requests.post(url, data=dynamic(**GOOD), timeout=5).status_code == 429
    with pytest.raises(requests.exceptions.ConnectionError, match="Connection aborted"):
        requests.post(url, data=dynamic(**GOOD), timeout=5)
    assert [r.answer for r in crm.requests] == ["status", "status", "cut"]
    with pytest.raises(ValueError, match="HTTP status"):
        Reply("status")
    with pytest.raises(ValueError, match="HTTP status"):
        Reply("ok", status=200)


def test_login_page_on_demand(crm: CrmEmulator) -> None:
    crm.script(LOGIN_PAGE_REPLY)
    answer = requests.post(f"{crm.url}/admin/dynamic.do", data=dynamic(**GOOD), timeout=5)
    assert answer.status_code == 200
    assert 'type="password"' in answer.text


def test_slow_answer_times_out_a_client(crm: CrmEmulator) -> None:
    crm.script(slow(5))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{crm.url}/admin/dynamic.do", data=dynamic(**GOOD), timeout=0.2)


def test_outage_refuses_connections_and_restore_reuses_the_port(crm: CrmEmulator) -> None:
    url = crm.url
    crm.outage()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{url}/admin/dynamic.do", data=dynamic(**GOOD), timeout=5)
    crm.restore()
    assert crm.url == url
    assert requests.post(f"{url}/admin/dynamic.do", data=dynamic(**GOOD), timeout=5).ok


def test_records_every_parameter_decoded(crm: CrmEmulator) -> None:
    body = "action=runDynamicClass&aon=%2B7+900&requestId=r-1&j_username=crm&j_password=s3cret"
    requests.post(
        f"{crm.url}/admin/dynamic.do?x=1",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    received = crm.requests[0]
    assert received.param("aon") == "+7 900"
    assert received.request_id == "r-1"
    assert received.url_params == (("x", "1"),)
    assert received.names()[:3] == ["x", "action", "aon"]
    assert crm.requests_for("+7 900") == [received]
    assert crm.requests_for("+7900") == []


def test_delivered_ids_only_counts_ok_answers(crm: CrmEmulator) -> None:
    url = f"{crm.url}/admin/dynamic.do"
    crm.script(SERVER_ERROR)
    requests.post(url, data=dynamic(**GOOD, requestId="a", aon="1"), timeout=5)
    requests.post(url, data=dynamic(**GOOD, requestId="a", aon="1"), timeout=5)
    requests.post(url, data=dynamic(j_username="crm", j_password="no", requestId="b"), timeout=5)
    assert crm.delivered_ids() == ["a"]
    assert crm.delivered_phones() == ["1"]
    assert crm.wait_for(lambda c: len(c.requests) == 3, timeout=1)
    crm.clear()
    assert crm.requests == []


def test_handler_errors_are_reraised_by_check() -> None:
    def explode(received: Received) -> None:
        raise RuntimeError("boom in the handler")

    with CrmEmulator("crm", "s3cret", on_request=explode) as crm:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{crm.url}/admin/dynamic.do", data=dynamic(**GOOD), timeout=5)
        with pytest.raises(RuntimeError, match="boom in the handler"):
            crm.check()


def test_standalone_prints_each_request_without_the_password() -> None:
    command = [sys.executable, "-m", "stasis_dnd.testing.crm_emulator", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--username", "crm", "--password", "s3cret"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" on ")[1].split()[0]
        requests.post(f"{url}/admin/dynamic.do", data=dynamic(**GOOD, aon="+7 900"), timeout=5)
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert line.startswith("POST /admin/dynamic.do ")
    assert 'aon="+7 900"' in line
    assert "j_password=***" in line
    assert "s3cret" not in line
    assert line.rstrip().endswith("-> ok")
