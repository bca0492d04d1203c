"""The clean-request check the hostile-input tests rely on finds each problem."""

from __future__ import annotations

import dataclasses

from stasis_dnd.callbacks.crm import CrmClient
from stasis_dnd.settings import CrmSettings
from stasis_dnd.testing.crm_contract import request_problems
from stasis_dnd.testing.crm_replies import Received


def sent(phone: str) -> Received:
    """The request the app's own client builds for `phone`, as received."""
    client = CrmClient(CrmSettings(username="robot", password="robot-secret"))
    params = tuple(client.params(phone, "0d6e1c7a-0000-4000-8000-000000000001"))
    return Received("POST", "/admin/dynamic.do", params, "id", 0.0, "ok")


def test_the_apps_own_request_is_clean() -> None:
    assert request_problems(sent("+79001234567"), username="robot", password="robot-secret") == []


def test_each_kind_of_problem_is_found() -> None:
    clean = sent("+79001234567")
    cases = {
        "not POST": dataclasses.replace(clean, method="GET"),
        "in the URL": dataclasses.replace(clean, url_params=(("aon", "1"),)),
        "parameters": dataclasses.replace(clean, params=(*clean.params, ("x", "1"))),
        "sub=": dataclasses.replace(
            clean, params=tuple((k, "other" if k == "sub" else v) for k, v in clean.params)
        ),
        "is not + and digits": sent("+7900&x=1"),
    }
    for needle, received in cases.items():
        problems = request_problems(received, username="robot", password="robot-secret")
        assert any(needle in problem for problem in problems), (needle, problems)
    assert request_problems(clean, username="robot", password="other") != []
