"""What a clean callback request looks like on the CRM's side, for tests that
push hostile input through the app: only the configured parameters, in the
body, in order, and a number of `+` and digits (docs/crm-contract.md)."""

from __future__ import annotations

import re

from stasis_dnd.testing.crm_replies import DEFAULT_CLASS, Received

# What stasis-dnd sends with the default [crm] settings, in this order.
DEFAULT_PARAMETERS = [
    "action",
    "class",
    "sub",
    "aon",
    "requestId",
    "responseType",
    "authToSession",
    "j_username",
    "j_password",
]
CLEAN_NUMBER = re.compile(r"\+?[0-9]+")


def request_problems(received: Received, *, username: str, password: str) -> list[str]:
    """What is wrong with a request sent with the default [crm] settings
    (empty when it is clean)."""
    fixed = {
        "action": "runDynamicClass",
        "class": DEFAULT_CLASS,
        "sub": "dndoperator",
        "responseType": "json",
        "authToSession": "0",
        "j_username": username,
        "j_password": password,
    }
    problems = []
    if received.method != "POST":
        problems.append(f"sent by {received.method}, not POST")
    if received.url_params:
        problems.append("parameters in the URL (they would reach access logs)")
    if received.names() != DEFAULT_PARAMETERS:
        problems.append(f"parameters {received.names()}, not {DEFAULT_PARAMETERS}")
    problems += [
        f"{name}={received.param(name)!r}, not {value!r}"
        for name, value in fixed.items()
        if received.param(name) != value
    ]
    if not CLEAN_NUMBER.fullmatch(received.param("aon") or ""):
        problems.append(f"aon={received.param('aon')!r} is not + and digits")
    return problems
