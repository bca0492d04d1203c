"""What the CRM emulator answers (`Reply` and the ready-made ones: `OK`,
`SERVER_ERROR`, `slow(...)`, ...) and what it records of each request
(`Received`, one line of it: `describe`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_CLASS = "ru.bgcrm.dyn.utils.asterisk.AsteriskIn"
# Answer kinds; `Reply.kind` is one of these.
KINDS = ("ok", "error", "server_error", "huge", "invalid_json", "login_page", "status", "cut")
HUGE_BYTES = 4 * 1024 * 1024

# What BGERP shows a browser (and a client without responseType=json) whose
# login failed: its login form, with status 200.
LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>BGERP</title></head><body>
<form action="/login.do" method="post">
<input type="text" name="j_username"><input type="password" name="j_password">
<button type="submit">Login</button>
</form></body></html>
"""


@dataclass(frozen=True)
class Reply:
    """How the emulator answers one request (after waiting `delay` seconds)."""

    kind: str = "ok"
    message: str = ""
    delay: float = 0.0
    # For kind "status": the HTTP status answered (with a short text body).
    status: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reply kind must be one of {', '.join(KINDS)}")
        if (self.kind == "status") != (100 <= self.status <= 599):
            raise ValueError("an HTTP status (100-599) goes with reply kind status, and only there")


OK = Reply("ok")
SERVER_ERROR = Reply("server_error")
HUGE = Reply("huge")
INVALID_JSON = Reply("invalid_json")
# Old BGCRM answers a failed login with its login page even when asked for JSON.
LOGIN_PAGE_REPLY = Reply("login_page")


def error(message: str = "java.lang.NullPointerException") -> Reply:
    """The class failed: HTTP 200 with `{"status":"error","message":...}`."""
    return Reply("error", message)


# The request is read, then the connection is closed without an answer.
CUT = Reply("cut")


def http_status(status: int) -> Reply:
    """Answer with this HTTP status and a text body (a 3xx points to /login)."""
    return Reply("status", status=status)


def slow(seconds: float, then: Reply = OK) -> Reply:
    """Answer as `then` does, after `seconds`."""
    return Reply(then.kind, then.message, seconds, then.status)


@dataclass(frozen=True)
class Received:
    """One request as the emulator got it: every parameter, decoded, in order."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    request_id: str
    at: float
    # What the emulator answered: a Reply kind, "unauthorized", "login_page",
    # "not_found", "jsonp" or "html".
    answer: str
    # The parameters that came in the URL's query string (the rest: the body).
    url_params: tuple[tuple[str, str], ...] = ()
    # The client's TCP port: the same for requests over one kept-alive connection.
    client_port: int = 0

    def param(self, name: str) -> str | None:
        """The first value of parameter `name`, or None when it was not sent."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def names(self) -> list[str]:
        """Parameter names in the order they arrived."""
        return [key for key, _ in self.params]


def describe(received: Received, secrets: Iterable[str] = ("j_password",)) -> str:
    """One line for a request, with secret parameters masked."""
    hidden = set(secrets)
    shown = " ".join(
        f"{key}={'***' if key in hidden else json.dumps(value, ensure_ascii=False)}"
        for key, value in received.params
    )
    return f"{received.method} {received.path} {shown} -> {received.answer}"
