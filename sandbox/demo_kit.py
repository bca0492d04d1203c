"""What sandbox/demo drives: the sandbox Asterisk, ARI, an observer, `stasis-dnd run`.

- ``Sandbox``: `sandbox/asterisk`, reused when already running (other
  developers' end-to-end tests share it), stopped at the end only if started
  here;
- ``Ari``: places scripted callers (Local channels, or SIP from Asterisk to
  itself; see sandbox/README.md) and hangs them up;
- ``Observer``: an ARI app subscribed to every channel, recording what callers
  heard and pressed;
- ``RunningApp``: `stasis-dnd run` as a subprocess with a temporary config.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import websocket
from sandbox_config import Settings as SandboxSettings

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "sandbox" / "asterisk"
# What the observer keeps (ChannelVarset and friends would only fill memory).
KEPT_EVENTS = frozenset(
    {
        "ChannelDialplan",
        "PlaybackStarted",
        "PlaybackFinished",
        "ChannelDtmfReceived",
        "ChannelHangupRequest",
        "ChannelDestroyed",
    }
)


class DemoError(Exception):
    """A problem the user can fix: printed as one line, exit status 1."""


def event_time(event: dict[str, Any]) -> float:
    """An ARI event's timestamp (Asterisk's clock is ours: same machine)."""
    try:
        return datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except (KeyError, ValueError):
        return float(event.get("received", time.time()))


class Sandbox:
    """sandbox/asterisk: reused when running, stopped at the end only if started here."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.started = False
        self.pid: int | None = None

    def status(self) -> tuple[int | None, str]:
        result = subprocess.run(
            [str(SANDBOX), "status"], capture_output=True, text=True, timeout=30, check=False
        )
        running = re.match(r"running, pid (\d+)", result.stdout)
        pid = int(running.group(1)) if result.returncode == 0 and running else None
        return pid, result.stdout.strip()

    def ensure_running(self, crm_url: str) -> None:
        pid, said = self.status()
        if pid:
            print(f"sandbox Asterisk already running (pid {pid}): reusing it, leaving it running")
            return
        first = said == "not provisioned"
        print(
            "starting the sandbox Asterisk (sandbox/asterisk start)"
            + ("; first run: building its Debian root, 1-2 minutes" if first else ""),
            flush=True,
        )
        self.started = True
        # The dialplan's own fallback (app not connected) files requests here too.
        env = {**os.environ, "STASIS_DND_SANDBOX_CRM_URL": crm_url}
        process = subprocess.Popen(
            [str(SANDBOX), "start"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        lines: list[str] = []
        reader = threading.Thread(target=self._relay, args=(process, lines), daemon=True)
        reader.start()
        began = time.monotonic()
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            if process.poll() is None:
                print(
                    f"  | ... {time.monotonic() - began:.0f} s{self._build_progress()}", flush=True
                )
        reader.join(timeout=5)
        if process.returncode != 0:
            last = next((line for line in reversed(lines) if line.startswith("sandbox/")), "")
            raise DemoError(f"the sandbox Asterisk did not start: {last or 'see above'}")
        self.pid, _ = self.status()

    @staticmethod
    def _relay(process: subprocess.Popen[bytes], lines: list[str]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            print(f"  | {line}", flush=True)

    def _build_progress(self) -> str:
        build_log = self.settings.cache / f"{self.settings.root.name}.build.log"
        with contextlib.suppress(OSError):
            if time.time() - build_log.stat().st_mtime < 60:
                last = build_log.read_text(errors="replace").strip().splitlines()[-1:]
                return f"; debootstrap: {last[0][:80]}" if last else ""
        return ""

    def stop_if_ours(self) -> None:
        if not self.started:
            return
        pid, _ = self.status()
        if pid is None:
            return
        if self.pid is not None and pid != self.pid:
            print(f"the sandbox Asterisk was restarted by someone else (pid {pid}): left running")
            return
        print(f"stopping the sandbox Asterisk (pid {pid}) this demo started", flush=True)
        result = subprocess.run(
            [str(SANDBOX), "stop"], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            print(f"sandbox/asterisk stop failed: {result.stderr.strip()}", file=sys.stderr)


class Ari:
    """The few ARI requests the demo needs: place callers, hang up."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base
        self.user, self.password = user, password
        self.session = requests.Session()
        self.session.auth = (user, password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.basic_header = f"Basic {token}"

    @property
    def events_url(self) -> str:
        return self.base.replace("http://", "ws://", 1) + "/events"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, f"{self.base}/{path}", timeout=10, **kwargs)
        except requests.RequestException as error:
            raise DemoError(f"ARI at {self.base} does not answer ({error})") from None

    def _originate(self, params: dict[str, str], variables: dict[str, str]) -> str:
        response = self._request("POST", "channels", params=params, json={"variables": variables})
        if response.status_code != 200:
            raise DemoError(f"ARI refused a call ({response.status_code} {response.text.strip()})")
        return str(response.json()["id"])

    def originate_local(
        self, script: str, number: str, name: str, variables: dict[str, str]
    ) -> str:
        """A Local channel: half ;1 (returned) calls dnd-queue, half ;2 runs the script."""
        return self._originate(
            {
                "endpoint": f"Local/{script}@test-caller",
                "context": "dnd-queue",
                "extension": "s",
                "priority": "1",
                "callerId": f'"{name}" <{number}>',
                "formats": "ulaw",  # as a phone would negotiate (ASTERISK-SANDBOX.md)
            },
            variables,
        )

    def originate_sip(
        self, script: str, number: str, name: str, variables: dict[str, str]
    ) -> tuple[str, str]:
        """Asterisk calls itself over SIP (sandbox/README.md): (caller, phone) channel ids."""
        phone = f"e2e-{uuid.uuid4().hex}"  # also the SIP user dialled; see [sip-self-in]
        self._originate(
            {
                "endpoint": f"PJSIP/{phone}@self",
                "channelId": phone,
                "context": "test-caller",
                "extension": script,
                "priority": "1",
                "callerId": f'"{name}" <{number}>',
            },
            {**variables, "E2E_VARS": ",".join(variables), "E2E_TARGET": "dnd-queue,s,1"},
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # [sip-self-in] writes the caller's id here
            answer = self._request(
                "GET", f"channels/{phone}/variable", params={"variable": "E2E_CALLER_ID"}
            )
            if answer.status_code == 200 and answer.json().get("value"):
                return str(answer.json()["value"]), phone
            time.sleep(0.05)
        self.hangup_quietly(phone)
        raise DemoError("the call over SIP did not arrive within 10 s (sandbox pjsip.conf?)")

    def hangup_quietly(self, channel_id: str) -> None:
        with contextlib.suppress(requests.RequestException):
            self.session.delete(f"{self.base}/channels/{channel_id}", timeout=5)  # 404: gone


class Observer:
    """An ARI app subscribed to every channel: what callers heard and pressed."""

    def __init__(self, ari: Ari, name: str) -> None:
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.lost = threading.Event()  # the socket closed: Asterisk stopped or restarted
        try:
            self._socket = websocket.create_connection(
                f"{ari.events_url}?app={name}&subscribeAll=true",
                header=[f"Authorization: {ari.basic_header}"],
                timeout=10,
            )
        except websocket.WebSocketBadStatusException as error:
            raise DemoError(
                f"ARI refused the event socket (HTTP {error.status_code}); the sandbox's ARI "
                "user and password are STASIS_DND_SANDBOX_ARI_USER / _PASSWORD"
            ) from None
        except (OSError, websocket.WebSocketException) as error:
            raise DemoError(f"cannot open the ARI event socket ({error})") from None
        self._socket.settimeout(None)
        threading.Thread(target=self._read, name="observer", daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            while message := self._socket.recv():
                event = json.loads(message)
                if event.get("type") in KEPT_EVENTS:
                    event["received"] = time.time()
                    with self._lock:
                        self._events.append(event)
        self.lost.set()

    def events_of(self, channel_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self._events
                if e.get("channel", {}).get("id") == channel_id
                or e.get("playback", {}).get("target_uri") == f"channel:{channel_id}"
            ]

    def destroyed(self, channel_id: str) -> bool:
        return any(e["type"] == "ChannelDestroyed" for e in self.events_of(channel_id))

    def close(self) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._socket.close()


class RunningApp:
    """`stasis-dnd run` as a subprocess, logging to a file."""

    def __init__(self, folder: Path, ari: Ari, app: str, crm: tuple[str, str, str]) -> None:
        """Start it for ARI app ``app``, filing callbacks at ``crm`` (url, user, password)."""
        crm_url, crm_user, crm_password = crm
        config = folder / "stasis-dnd.ini"
        config.write_text(
            f"[ari]\nurl = {ari.base.removesuffix('/ari')}\nusername = {ari.user}\n"
            f"password = {ari.password}\napp = {app}\ndrain_timeout = 2s\n"
            f"[crm]\nurl = {crm_url}\nusername = {crm_user}\npassword = {crm_password}\n"
            f"[outbox]\npath = {folder / 'outbox.sqlite3'}\n"
        )
        config.chmod(0o600)
        self.log = folder / "app.log"
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        # STASIS_DND_<SECTION>_<KEY> in the user's shell would override the demo's config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STASIS_DND_")}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stasis_dnd", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "PYTHONPATH": path},
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the app
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            last = (self.log_text().strip().splitlines() or ["(no output)"])[-1]
            raise DemoError(f"stasis-dnd run exited with status {self.process.returncode}: {last}")

    def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while "event=ari_connected" not in self.log_text():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"stasis-dnd run did not connect to ARI within {timeout:.0f} s")
            time.sleep(0.1)

    def problems(self) -> list[str]:
        """Warnings, errors and tracebacks the app logged."""
        marks = ("level=WARNING", "level=ERROR", "level=CRITICAL", "Traceback")
        return [line for line in self.log_text().splitlines() if line.startswith(marks)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
