"""Helpers for the end-to-end tests: the fake CRM and minimal ARI access."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests

CRM_OK = {"status": "ok", "message": "", "data": {}, "eventList": []}


@dataclass(frozen=True)
class CrmRequest:
    """One request the fake CRM received."""

    method: str
    path: str
    params: dict[str, list[str]]  # query string and form body together
    headers: dict[str, str]


@dataclass
class FakeCrm:
    """Records requests; answers every one with ``answer`` (JSON, HTTP 200)."""

    url: str = ""
    answer: dict[str, Any] = field(default_factory=lambda: dict(CRM_OK))
    requests: list[CrmRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.answer = dict(CRM_OK)

    def received(self) -> list[CrmRequest]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float) -> list[CrmRequest]:
        """Wait until at least ``count`` requests arrived (or the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.received()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received()


def crm_handler(crm: FakeCrm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            url = urllib.parse.urlsplit(self.path)
            params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            for key, values in urllib.parse.parse_qs(body, keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
            with crm.lock:
                crm.requests.append(CrmRequest(self.command, url.path, params, dict(self.headers)))
                answer = json.dumps(crm.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean

    return Handler


@dataclass(frozen=True)
class Ari:
    """Minimal ARI REST access to the sandbox."""

    base: str
    user: str
    password: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    @property
    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"

    @property
    def events_url(self) -> str:
        return self.base.replace("http://", "ws://", 1) + "/events"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base}/{path}", auth=self.auth, timeout=10, **kwargs)

    def originate_caller(
        self,
        script: str,
        *,
        number: str = "+79001234567",
        name: str = "Ivan",
        variables: dict[str, str] | None = None,
        extension: str = "s",
        context: str = "dnd-queue",
    ) -> str:
        """Call ``context``/``extension`` from a scripted phone; return the caller's channel id.

        The channel is a Local channel: half ;1 (the caller, whose id is returned)
        runs ``context``, half ;2 runs ``script``@test-caller (e.g. ``press1after5``).
        ``variables`` are set on the caller and override dialplan globals.
        """
        response = self.request(
            "POST",
            "channels",
            params={
                "endpoint": f"Local/{script}@test-caller",
                "context": context,
                "extension": extension,
                "priority": "1",
                "callerId": f'"{name}" <{number}>',
                "formats": "ulaw",  # as a phone would negotiate; see ASTERISK-SANDBOX.md
            },
            json={"variables": variables or {}},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def channel_exists(self, channel_id: str) -> bool:
        return self.request("GET", f"channels/{channel_id}").status_code == 200

    def wait_gone(self, channel_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.channel_exists(channel_id):
                return True
            time.sleep(0.1)
        return False

    def hangup_quietly(self, channel_id: str) -> None:
        self.request("DELETE", f"channels/{channel_id}")  # 404 when already gone
