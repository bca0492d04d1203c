"""`stasis-dnd run` against the sandbox Asterisk, and what its callers heard.

``start_app`` runs the app as a subprocess (its log in a file, read by the
test); ``Observer`` is an ARI app subscribed to every channel, so a test can
tell which prompts a caller heard without touching the app under test.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket
from e2e_kit import Ari

from stasis_dnd.callbacks.outbox import DELIVERED, Outbox
from stasis_dnd.config import load_settings
from stasis_dnd.testing.crm_emulator import CrmEmulator

# Queue + prompt + digit timeout + confirmation + goodbye, with room to spare.
CALL_TIMEOUT = 40.0
CRM_USER = "robot"
CRM_PASSWORD = "robot-secret"
PROMPT = "sound:custom/IVR_DND_OPERATORS"
GOODBYE = "sound:vm-goodbye"
SORRY = "sound:sorry-youre-having-problems"


class Observer:
    """Every ARI event of every channel (an app with subscribeAll), on a thread."""

    def __init__(self, ari: Ari) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.socket = websocket.create_connection(
            f"{ari.events_url}?app=observer-{uuid.uuid4().hex[:8]}&subscribeAll=true",
            header=[f"Authorization: {ari.basic_header}"],
            timeout=10,
        )
        self.socket.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while message := self.socket.recv():
                self.events.put(json.loads(message))
        except (websocket.WebSocketException, OSError):
            return

    def _read_arrived(self) -> None:
        while not self.events.empty():
            self.seen.append(self.events.get())

    def heard(self, channel_id: str) -> list[str]:
        """Media that started playing on the channel, in order."""
        self._read_arrived()
        return [
            e["playback"]["media_uri"]
            for e in self.seen
            if e.get("type") == "PlaybackStarted"
            and e["playback"].get("target_uri") == f"channel:{channel_id}"
        ]

    def wait_heard(
        self, channel_id: str, media: str, timeout: float = 15.0, times: int = 1
    ) -> None:
        """Wait until ``media`` started playing on the channel (``times`` times):
        a play of its own, or a part of a play of several media."""
        deadline = time.monotonic() + timeout
        while self.heard(channel_id).count(media) < times:
            assert time.monotonic() < deadline, f"{media} never played on {channel_id}"
            time.sleep(0.05)

    def playback(
        self, channel_id: str, first: str, times: int = 1, timeout: float = 40.0
    ) -> list[tuple[str, str, str]]:
        """The events of the ``times``-th playback on the channel whose first
        part is ``first``, once it has finished: (type, state, media_uri) each."""
        deadline = time.monotonic() + timeout
        while True:
            self.heard(channel_id)  # reads what arrived
            starts = [
                e["playback"]["id"]
                for e in self.seen
                if e.get("type") == "PlaybackStarted"
                and e["playback"].get("target_uri") == f"channel:{channel_id}"
                and e["playback"]["media_uri"] == first
            ]
            ids = list(dict.fromkeys(starts))  # a part of the same play starts again
            if len(ids) >= times:
                events = [
                    (e["type"], e["playback"]["state"], e["playback"]["media_uri"])
                    for e in self.seen
                    if str(e.get("type")).startswith("Playback")
                    and e["playback"]["id"] == ids[times - 1]
                ]
                if events and events[-1][0] == "PlaybackFinished":
                    return events
            assert time.monotonic() < deadline, f"playback {first} #{times} never ended"
            time.sleep(0.05)

    def ran(self, channel_id: str) -> list[tuple[str, str, str]]:
        """The dialplan applications the channel ran outside Stasis, in order:
        (context, application, its arguments) each."""
        self._read_arrived()
        return [
            (e["channel"]["dialplan"]["context"], e["dialplan_app"], e["dialplan_app_data"])
            for e in self.seen
            if e.get("type") == "ChannelDialplan" and e["channel"]["id"] == channel_id
        ]

    def close(self) -> None:
        self.socket.close()


@dataclass
class RunningApp:
    """A `stasis-dnd run` subprocess; its stdout and stderr go to ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    config: Path

    def log_text(self) -> str:
        return self.log.read_text()

    def wait_log(self, text: str, timeout: float = CALL_TIMEOUT, after: int = 0) -> None:
        """Wait until ``text`` is in the log (past the first ``after`` characters)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text()[after:]:
            assert self.process.poll() is None, f"the app exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log_text()}"
            time.sleep(0.1)

    def call_line(self, channel_id: str) -> str:
        """The app's one summary line for a finished call (``event=call ...``)."""
        lines = [
            line
            for line in self.log_text().splitlines()
            if f"event=call channel={channel_id} " in line
        ]
        assert len(lines) == 1, lines
        return lines[0]

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def write_config(
    folder: Path, ari: Ari, crm: CrmEmulator, app: str, ari_extra: str = "", *, crm_extra: str = ""
) -> Path:
    """A config file for `app` on the sandbox, filing callbacks with ``crm``.

    ``ari_extra``, ``crm_extra``: more lines for the [ari] and [crm] sections.
    """
    config = folder / "stasis-dnd.ini"
    config.write_text(
        f"[ari]\nurl = {ari.base.removesuffix('/ari')}\nusername = {ari.user}\n"
        f"password = {ari.password}\napp = {app}\ndrain_timeout = 2s\n{ari_extra}"
        f"[crm]\nurl = {crm.url}\nusername = {CRM_USER}\npassword = {CRM_PASSWORD}\n{crm_extra}"
        f"[outbox]\npath = {folder / 'outbox.sqlite3'}\n"
    )
    config.chmod(0o600)
    return config


def start_app(config: Path, app: str, log: Path) -> RunningApp:
    """Run `stasis-dnd run --config CONFIG`; return once it is connected to ARI."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stasis_dnd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningApp(app, process, log, config)
    try:
        running.wait_log("event=ari_connected", timeout=20)
    except AssertionError:
        process.kill()
        process.wait(timeout=10)
        raise
    return running


def new_app_name() -> str:
    """A fresh app name: a stasis-dnd running elsewhere cannot take these calls."""
    return f"stasis-dnd-e2e-{uuid.uuid4().hex[:8]}"


def assert_filed_once(config: Path, crm: CrmEmulator, phone: str) -> None:
    """After the app of ``config`` has stopped: the CRM got one request, for
    ``phone``, and the outbox holds it once, delivered at the first attempt.

    Stopped, the app can send nothing more; an outbox with nothing pending has
    nothing left to send at its next start, however long a retry back-off.
    """
    assert [r.param("aon") for r in crm.requests] == [phone], crm.requests
    outbox = Outbox.open(load_settings(config).outbox.path)
    try:
        rows = [(e.phone, e.state, e.attempts) for e in outbox.entries(limit=1000)]
    finally:
        outbox.close()
    assert rows == [(phone, DELIVERED, 1)], rows
