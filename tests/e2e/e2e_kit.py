"""Helpers for the end-to-end tests: the fake CRM, callers, minimal ARI access.

Callers come in two kinds, both scripted by ``[test-caller]`` in
sandbox/extensions-sandbox.conf (``press1afterN``, ``press7afterN``,
``silent``, ``quitafterN``, ``press1if<VAR>``: press 1 once the global
variable VAR is set, see ``Ari.set_global``; ``KEYPAD``: key in whatever
``Ari.send_keys`` gives it, as often as it is given):

- ``Ari.originate_caller``: a Local channel (cheap; DTMF as frames between
  the halves);
- ``Ari.originate_sip_caller``: a call over real SIP and RTP from Asterisk to
  itself on loopback, DTMF as RFC 4733 events, G.711 u-law; with
  ``hidden=True`` the phone withholds its number.

``Ari.originate_into_app`` puts a Local channel straight into an app, for
tests of what ARI itself does (playbacks).
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests
import websocket

CRM_OK = {"status": "ok", "message": "", "data": {}, "eventList": []}
# The phone script that keys in what `Ari.send_keys` gives it ([test-caller] _keys.).
KEYPAD = "keypad"
# What Asterisk makes of a phone that withholds its number (see `originate_sip_caller`).
HIDDEN_CALLER = {"name": "Anonymous", "number": "anonymous"}


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
class SipCall:
    """The two legs of a SIP call from a scripted phone (``Ari.originate_sip_caller``)."""

    caller: str  # inbound PJSIP channel: runs the dialplan, enters Stasis
    phone: str  # outbound PJSIP channel: runs the phone's script
    keys: str = ""  # the KEYPAD phone's global variable (`Ari.send_keys`)


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

    def originate_into_app(self, app: str, *, script: str = "silent") -> str:
        """A Local channel straight into ``Stasis(app)``, answered by ``script``@test-caller
        (half ;2); returns the id of half ;1, the channel in the app."""
        response = self.request(
            "POST",
            "channels",
            params={
                "endpoint": f"Local/{script}@test-caller",
                "app": app,
                "callerId": '"Ivan" <+79001234567>',
                "formats": "ulaw",
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def originate_sip_caller(
        self,
        script: str,
        *,
        number: str = "+79001234567",
        name: str = "Ivan",
        hidden: bool = False,
        variables: dict[str, str] | None = None,
        extension: str = "s",
        context: str = "dnd-queue",
        timeout: float = 10.0,
    ) -> SipCall:
        """Call ``context``/``extension`` over SIP from a scripted phone.

        Asterisk calls itself (pjsip.conf endpoint ``self`` on the sandbox's
        loopback SIP port). The phone is the outbound leg, originated here; it
        runs ``script``@test-caller once the caller answers, and its DTMF goes
        as RFC 4733 events. The caller is the inbound leg Asterisk creates for
        the INVITE (``PJSIP/self-...``), like a real phone's call: its caller
        id comes from the SIP From header (``"name" <number>``), and it runs
        ``context``/``extension`` with ``variables`` set on it (overriding
        dialplan globals; names and values without commas). This is the
        channel that enters Stasis. Returns both ids once the caller exists.

        ``hidden``: the phone withholds its number, as a phone set to hide it
        does: Asterisk sends From "Anonymous" <sip:anonymous@anonymous.invalid>
        and ``Privacy: id``; the caller then arrives as ``HIDDEN_CALLER``.
        ``script`` ``KEYPAD``: the phone keys in what ``send_keys`` gives it.
        """
        variables = variables or {}
        if any("," in key or "," in value for key, value in variables.items()):
            raise ValueError(f"commas cannot cross to the SIP caller: {variables}")
        phone = f"e2e-{uuid.uuid4().hex}"  # also the SIP user dialled: see [sip-self-in]
        keys = f"E2E_KEYS_{phone[4:12]}" if script == KEYPAD else ""
        params = {
            "endpoint": f"PJSIP/{phone}@self",
            "channelId": phone,
            "context": "test-caller",
            "extension": f"keys{keys}" if keys else script,
            "priority": "1",
        }
        own: dict[str, str] = {}  # the phone leg's own settings, not copied to the caller
        if hidden:
            # originate's callerId would also set the connected line, presented
            # "allowed", from which chan_pjsip builds From: set the parts instead.
            own = {
                "CALLERID(num)": number,
                "CALLERID(name)": name,
                "CALLERID(pres)": "prohib",
                "PJSIP_HEADER(add,Privacy)": "id",
            }
        else:
            params["callerId"] = f'"{name}" <{number}>'
        response = self.request(
            "POST",
            "channels",
            params=params,
            json={
                "variables": {
                    **own,
                    **variables,
                    "E2E_VARS": ",".join(variables),
                    "E2E_TARGET": f"{context},{extension},1",
                }
            },
        )
        assert response.status_code == 200, response.text
        # [sip-self-in] writes the inbound leg's id onto the phone leg.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.request(
                "GET", f"channels/{phone}/variable", params={"variable": "E2E_CALLER_ID"}
            )
            if answer.status_code == 200 and answer.json().get("value"):
                return SipCall(caller=str(answer.json()["value"]), phone=phone, keys=keys)
            if answer.status_code == 404 and not self.channel_exists(phone):
                raise AssertionError(f"the SIP phone leg {phone} ended before the call arrived")
            time.sleep(0.05)
        self.hangup_quietly(phone)
        raise AssertionError(f"no inbound SIP call for phone {phone} within {timeout} s")

    def variable(self, channel_id: str, name: str) -> str | None:
        """A channel variable or function value (``CHANNEL(state)``); None if unreadable."""
        response = self.request("GET", f"channels/{channel_id}/variable", params={"variable": name})
        return str(response.json()["value"]) if response.status_code == 200 else None

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

    def set_global(self, name: str, value: str) -> None:
        """Set a dialplan global variable (``press1if<NAME>`` waits for one)."""
        response = self.request(
            "POST", "asterisk/variable", params={"variable": name, "value": value}
        )
        assert response.status_code == 204, response.text

    def global_variable(self, name: str) -> str:
        response = self.request("GET", "asterisk/variable", params={"variable": name})
        assert response.status_code == 200, response.text
        return str(response.json()["value"])

    def send_keys(self, call: SipCall, keys: str, timeout: float = 10.0) -> None:
        """Have a ``KEYPAD`` phone key in ``keys`` (e.g. "79001234567#"): 120 ms per
        key, 250 ms between keys, as RFC 4733 events. Returns once the phone has
        taken them (it keys them in over the next 0.37 s per key)."""
        assert call.keys, "the call's phone does not run the KEYPAD script"
        assert self.global_variable(call.keys) == "", "the phone has not taken the last keys"
        self.set_global(call.keys, keys)
        deadline = time.monotonic() + timeout
        while self.global_variable(call.keys):
            assert time.monotonic() < deadline, f"the phone did not take {keys!r} in {timeout} s"
            time.sleep(0.05)

    def app_channels(self, app: str) -> list[str]:
        """Ids of the channels parked in Stasis for ``app``."""
        response = self.request("GET", f"applications/{app}")
        assert response.status_code == 200, response.text
        return [str(c) for c in response.json()["channel_ids"]]


def assert_one_fallback_request(crm: FakeCrm, number: str) -> None:
    """The CRM got exactly one request, as extensions.conf.sample's fallback files it."""
    received = crm.received()
    assert len(received) == 1, received
    request = received[0]
    assert request.method == "POST"
    assert request.path == "/admin/dynamic.do"
    params = request.params
    assert params["aon"] == [number]  # "+" arrived URL-encoded, not as a space
    assert params["action"] == ["runDynamicClass"]
    assert params["sub"] == ["dndoperator"]
    assert params["responseType"] == ["json"]
    assert params["authToSession"] == ["0"]
    assert params["j_username"] == ["sandbox-user"]
    assert "callback" not in params  # would turn the answer into JSONP


EVENT_TIMEOUT = 15.0


class AriEvents:
    """One app's ARI events, read into a queue on a thread (never blocks the socket)."""

    def __init__(self, ari: Ari, app: str) -> None:
        self.app = app
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.socket = websocket.create_connection(
            f"{ari.events_url}?app={app}&subscribeAll=false",
            header=[f"Authorization: {ari.basic_header}"],
            timeout=10,
        )
        self.socket.settimeout(None)
        self.thread = threading.Thread(target=self._read, name=f"ari-{app}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                message = self.socket.recv()
                if not message:
                    return
                self.events.put(json.loads(message))
        except (websocket.WebSocketException, OSError):
            return

    def wait_for(
        self, event_type: str, channel_id: str, timeout: float = EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """The next ``event_type`` event for ``channel_id``; others are skipped."""
        return self.next(
            lambda e: e.get("type") == event_type and e.get("channel", {}).get("id") == channel_id,
            f"{event_type} for {channel_id}",
            timeout,
        )

    def next(
        self, wanted: Callable[[dict[str, Any]], bool], what: str, timeout: float = EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """The next event ``wanted`` accepts; others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if wanted(event):
                return event

    def next_playback_event(
        self, channel_id: str, timeout: float = EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """The next Playback* event of a playback on ``channel_id``."""
        return self.next(
            lambda e: (
                str(e.get("type")).startswith("Playback")
                and e["playback"].get("target_uri") == f"channel:{channel_id}"
            ),
            f"playback event on {channel_id}",
            timeout,
        )

    def playback_until_finished(
        self, playback_id: str, timeout: float = 30.0
    ) -> list[tuple[str, str, str, str | None]]:
        """The events of one playback up to its PlaybackFinished, each as
        (type, state, media_uri, next_media_uri); other events are skipped."""
        seen: list[tuple[str, str, str, str | None]] = []
        deadline = time.monotonic() + timeout
        while not seen or seen[-1][0] != "PlaybackFinished":
            event = self.next(
                lambda e: (
                    str(e.get("type")).startswith("Playback")
                    and e["playback"].get("id") == playback_id
                ),
                f"PlaybackFinished of {playback_id} (so far {seen})",
                max(deadline - time.monotonic(), 0.01),
            )
            playback = event["playback"]
            seen.append(
                (event["type"], playback["state"], playback["media_uri"],
                 playback.get("next_media_uri"))
            )  # fmt: skip
        return seen

    def close(self) -> None:
        self.socket.close()
        self.thread.join(timeout=5)
