"""The promise, on a real Asterisk 22: a caller who pressed 1 gets a CRM request.

`stasis-dnd run` runs as a subprocess against the sandbox Asterisk, callers
come through the queue of extensions.conf.sample, and an observer app
subscribed to everything records what the caller heard (playback events).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from app_kit import (
    CALL_TIMEOUT,
    Observer,
    RunningApp,
    assert_filed_once,
    new_app_name,
    start_app,
    write_config,
)
from conftest import SANDBOX
from e2e_kit import Ari, FakeCrm

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e


@pytest.fixture
def crm(emulator: CrmEmulator) -> CrmEmulator:
    emulator.clear()
    return emulator


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
    asterisk: Ari,
    crm: CrmEmulator,
    observer: Observer,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    # An app of its own, so that it can be stopped before the requests are counted.
    name = new_app_name()
    config = write_config(tmp_path, asterisk, crm, name)
    app = start_app(config, name, tmp_path / "app.log")
    try:
        caller = cleanup_channels(
            asterisk.originate_caller(
                "press1after4",
                number="+7 900 123-45-67",
                variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"},
            )
        )
        assert asterisk.wait_gone(caller, CALL_TIMEOUT)
        assert crm.wait_for(lambda c: len(c.requests) >= 1)
        app.wait_log(f"event=call channel={caller}")
    finally:
        assert app.stop() == 0, app.log_text()
    assert_filed_once(config, crm, "+79001234567")
    received = crm.requests[0]
    assert received.answer == "ok"
    assert received.param("sub") == "dndoperator"
    assert received.method == "POST"
    heard = observer.heard(caller)
    assert heard[0] == "sound:custom/IVR_DND_OPERATORS"
    assert heard[-1] == "sound:vm-goodbye"
    assert "outcome=callback ending=hung_up" in app.call_line(caller)


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
    Asterisk, the restarted app takes it over, and the caller's 1 is filed,
    with the facts and the profile of the caller's Stasis() arguments (read
    back from the channel: the restarted app never saw its StasisStart)."""
    emulator.clear()
    name = new_app_name()
    facts = "context_params = queue=queue&reason=reason&profile=profile\n"
    config = write_config(tmp_path, asterisk, emulator, name, crm_extra=facts)
    # Queue 999's callers get their own sub: proof the profile survived the restart.
    config.write_text(config.read_text() + "[profile:support]\nqueues = 999\nsub = dndsupport\n")
    first = start_app(config, name, tmp_path / "first.log")
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
    second = start_app(config, name, tmp_path / "second.log")
    try:
        second.wait_log(f"event=recovered channel={caller}", timeout=20)
        second.wait_log(f"event=call channel={caller}")
        assert "outcome=callback ending=hung_up" in second.log_text()
        assert emulator.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])
    finally:
        assert second.stop() == 0
    assert_filed_once(config, emulator, "+79001234567")
    (request,) = emulator.delivered()
    sent = {name: request.param(name) for name in ("sub", "queue", "reason", "profile")}
    assert sent == {"sub": "dndsupport", "queue": "999", "reason": "TIMEOUT", "profile": "support"}
