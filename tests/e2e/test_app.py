"""The promise, on a real Asterisk 22: a caller who pressed 1 gets a CRM request.

`stasis-dnd run` runs as a subprocess against the sandbox Asterisk, callers
come through the queue of extensions.conf.sample, and an observer app
subscribed to everything records what the caller heard (playback events).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket
from conftest import ARI_PASSWORD, ARI_PORT, ARI_USER, SANDBOX
from e2e_kit import Ari, FakeCrm

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

CALL_TIMEOUT = 40.0


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

    def heard(self, channel_id: str) -> list[str]:
        """Media that started playing on the channel, in order."""
        while not self.events.empty():
            self.seen.append(self.events.get())
        return [
            e["playback"]["media_uri"]
            for e in self.seen
            if e.get("type") == "PlaybackStarted"
            and e["playback"].get("target_uri") == f"channel:{channel_id}"
        ]

    def close(self) -> None:
        self.socket.close()


@dataclass
class RunningApp:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()

    def wait_log(self, text: str, timeout: float = CALL_TIMEOUT, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text()[after:]:
            assert self.process.poll() is None, f"the app exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log_text()}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrmEmulator]:
    """The BGERP emulator the app files its requests with."""
    with CrmEmulator("robot", "robot-secret") as crm:
        yield crm
        crm.check()


@pytest.fixture
def crm(emulator: CrmEmulator) -> CrmEmulator:
    emulator.clear()
    return emulator


@pytest.fixture(scope="module")
def app(
    asterisk: Ari, emulator: CrmEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    folder = tmp_path_factory.mktemp("app")
    name = f"stasis-dnd-e2e-{uuid.uuid4().hex[:8]}"
    config = folder / "stasis-dnd.ini"
    config.write_text(
        f"[ari]\nurl = http://127.0.0.1:{ARI_PORT}\nusername = {ARI_USER}\n"
        f"password = {ARI_PASSWORD}\napp = {name}\ndrain_timeout = 2s\n"
        f"[crm]\nurl = {emulator.url}\nusername = robot\npassword = robot-secret\n"
        f"[outbox]\npath = {folder / 'outbox.sqlite3'}\n"
    )
    config.chmod(0o600)
    log = folder / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stasis_dnd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningApp(name, process, log)
    try:
        running.wait_log("event=ari_connected", timeout=20)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, running.log_text()


@pytest.fixture
def observer(asterisk: Ari) -> Iterator[Observer]:
    seen = Observer(asterisk)
    yield seen
    seen.close()


@pytest.fixture
def call(
    asterisk: Ari, app: RunningApp, cleanup_channels: Callable[[str], str]
) -> Callable[..., str]:
    """Place a Local-channel caller into the app's queue; returns its channel id."""

    def place(script: str, number: str = "+7 900 123-45-67", **variables: str) -> str:
        channel = asterisk.originate_caller(
            script,
            number=number,
            variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1", **variables},
        )
        return cleanup_channels(channel)

    return place


def test_caller_who_presses_1_gets_exactly_one_crm_request(
    asterisk: Ari, app: RunningApp, crm: CrmEmulator, observer: Observer, call: Callable[..., str]
) -> None:
    caller = call("press1after4")
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    assert crm.wait_for(lambda c: len(c.requests) >= 1)
    time.sleep(0.5)  # a second request would arrive about now
    received = crm.requests
    assert len(received) == 1
    assert received[0].answer == "ok"
    assert received[0].param("aon") == "+79001234567"
    assert received[0].param("sub") == "dndoperator"
    assert received[0].method == "POST"
    heard = observer.heard(caller)
    assert heard[0] == "sound:custom/IVR_DND_OPERATORS"
    assert heard[-1] == "sound:vm-goodbye"
    app.wait_log(f"event=call channel={caller}")
    assert "outcome=callback ending=hung_up" in app.log_text()


def test_silence_times_out_without_a_request(
    asterisk: Ari, app: RunningApp, crm: CrmEmulator, observer: Observer, call: Callable[..., str]
) -> None:
    caller = call("silent")
    app.wait_log(f"event=call channel={caller}")
    assert f"event=call channel={caller} caller=+79*******67 outcome=timeout" in app.log_text()
    assert observer.heard(caller) == [
        "sound:custom/IVR_DND_OPERATORS",
        "sound:sorry-youre-having-problems",
        "sound:vm-goodbye",
    ]
    assert asterisk.wait_gone(caller, 10)
    assert crm.requests == []


def test_wrong_key_gets_sorry_without_a_request(
    asterisk: Ari, app: RunningApp, crm: CrmEmulator, observer: Observer, call: Callable[..., str]
) -> None:
    caller = call("press7after4")
    app.wait_log(f"event=call channel={caller}")
    assert "outcome=invalid ending=hung_up" in app.log_text()
    assert "sound:sorry-youre-having-problems" in observer.heard(caller)
    assert crm.requests == []


def test_caller_hanging_up_during_the_prompt(
    asterisk: Ari, app: RunningApp, crm: CrmEmulator, call: Callable[..., str]
) -> None:
    before = len(app.log_text())
    caller = call("quitafter3")
    app.wait_log(f"event=call channel={caller}")
    assert "outcome=abandoned ending=caller_gone" in app.log_text()
    new_lines = app.log_text()[before:]
    assert "level=WARNING" not in new_lines and "level=ERROR" not in new_lines, new_lines
    assert "Traceback" not in new_lines
    assert crm.requests == []


def test_breakout_in_the_queue_files_the_request(
    asterisk: Ari, app: RunningApp, crm: CrmEmulator, call: Callable[..., str]
) -> None:
    caller = call("press1after2", number="+79005550001", DND_QUEUE_TIMEOUT="60")
    app.wait_log(f"event=call channel={caller}")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79005550001"])


def test_one_call_over_real_sip(
    asterisk: Ari, app: RunningApp, crm: CrmEmulator, cleanup_channels: Callable[[str], str]
) -> None:
    sip = asterisk.originate_sip_caller(
        "press1after4",
        number="+79005550002",
        variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
    )
    cleanup_channels(sip.phone)
    cleanup_channels(sip.caller)
    app.wait_log(f"event=call channel={sip.caller}")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79005550002"])


def test_app_reconnects_after_asterisk_restarts(
    asterisk: Ari, app: RunningApp, crm_server: FakeCrm, crm: CrmEmulator, call: Callable[..., str]
) -> None:
    env = {**os.environ, "STASIS_DND_SANDBOX_CRM_URL": crm_server.url}
    before = len(app.log_text())
    for command in ("stop", "start"):
        result = subprocess.run(
            [str(SANDBOX), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    app.wait_log("event=ari_connected", timeout=30, after=before)
    caller = call("press1after4", number="+79005550003")
    app.wait_log(f"event=call channel={caller}")
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79005550003"])


def test_app_killed_mid_call_recovers_the_parked_caller(
    asterisk: Ari,
    emulator: CrmEmulator,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    """SIGKILL while a real caller hears the menu: the channel stays parked in
    Asterisk, the restarted app takes it over, and the caller's 1 is filed."""
    emulator.clear()
    name = f"stasis-dnd-e2e-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "stasis-dnd.ini"
    config.write_text(
        f"[ari]\nurl = http://127.0.0.1:{ARI_PORT}\nusername = {ARI_USER}\n"
        f"password = {ARI_PASSWORD}\napp = {name}\ndrain_timeout = 2s\n"
        f"[crm]\nurl = {emulator.url}\nusername = robot\npassword = robot-secret\n"
        f"[outbox]\npath = {tmp_path / 'outbox.sqlite3'}\n"
    )
    config.chmod(0o600)

    def start(log: Path) -> RunningApp:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "stasis_dnd", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = RunningApp(name, process, log)
        running.wait_log("event=ari_connected", timeout=20)
        return running

    first = start(tmp_path / "first.log")
    caller = cleanup_channels(
        asterisk.originate_caller(
            "press1after9", variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"}
        )
    )
    deadline = time.monotonic() + 15
    while caller not in asterisk.request("GET", f"applications/{name}").json()["channel_ids"]:
        assert time.monotonic() < deadline, "the caller never reached the app"
        time.sleep(0.1)
    time.sleep(1.0)  # the menu is playing now
    first.process.kill()
    first.process.wait(timeout=10)
    assert asterisk.channel_exists(caller)  # parked in Stasis, not dropped
    second = start(tmp_path / "second.log")
    try:
        second.wait_log(f"event=recovered channel={caller}", timeout=20)
        second.wait_log(f"event=call channel={caller}")
        assert "outcome=callback ending=hung_up" in second.log_text()
        assert emulator.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])
    finally:
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=30) == 0
