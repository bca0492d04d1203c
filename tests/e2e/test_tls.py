"""ARI over TLS on a real Asterisk 22: REST over https and events over wss,
verified against the sandbox's own CA through `[ari] ca_bundle`.

The sandbox's http.conf serves TLS on STASIS_DND_SANDBOX_ARI_TLS_PORT (default:
the ARI port + 1) with a certificate for 127.0.0.1 signed by a CA that
`sandbox/asterisk ca` names. Without `ca_bundle` the app refuses that
certificate with one sentence saying what to set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_kit import assert_filed_once
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARI_PORT = int(os.environ.get("STASIS_DND_SANDBOX_ARI_PORT", "18088"))
TLS_PORT = int(os.environ.get("STASIS_DND_SANDBOX_ARI_TLS_PORT", str(ARI_PORT + 1)))
ARI_URL = f"https://127.0.0.1:{TLS_PORT}"
ARI_USER = os.environ.get("STASIS_DND_SANDBOX_ARI_USER", "stasis-dnd")
ARI_PASSWORD = os.environ.get("STASIS_DND_SANDBOX_ARI_PASSWORD", "stasis-dnd-sandbox")
CRM_USER, CRM_PASSWORD = "robot", "robot-secret"
CALL_TIMEOUT = 40.0


@pytest.fixture(scope="module")
def sandbox_ca(asterisk: Ari) -> Path:
    """The CA file that signed the running sandbox's TLS certificate."""
    result = subprocess.run(
        [str(REPO / "sandbox" / "asterisk"), "ca"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def write_config(folder: Path, app: str, crm: CrmEmulator, ca_bundle: Path | None) -> Path:
    config = folder / f"{app}.ini"
    config.write_text(
        f"[ari]\nurl = {ARI_URL}\nusername = {ARI_USER}\npassword = {ARI_PASSWORD}\n"
        f"app = {app}\ndrain_timeout = 2s\nca_bundle = {ca_bundle or ''}\n"
        f"[crm]\nurl = {crm.url}\nusername = {CRM_USER}\npassword = {CRM_PASSWORD}\n"
        f"[outbox]\npath = {folder / (app + '.sqlite3')}\n"
    )
    config.chmod(0o600)
    return config


def stasis_dnd(*args: str) -> list[str]:
    return [sys.executable, "-m", "stasis_dnd", *args]


def clean_env() -> dict[str, str]:
    """This environment without anything that would change which CAs are trusted."""
    drop = ("STASIS_DND_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class RunningApp:
    """`stasis-dnd run` with its output in a file."""

    def __init__(self, config: Path) -> None:
        self.log = config.with_suffix(".log")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                stasis_dnd("run", "--config", str(config), "--log-level", "debug"),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**clean_env(), "PYTHONUNBUFFERED": "1"},
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = CALL_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert self.process.poll() is None, f"the app exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.text()}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def tls_crm() -> Iterator[CrmEmulator]:
    """The BGERP emulator of this module's apps (not the dialplan's fake CRM)."""
    with CrmEmulator(CRM_USER, CRM_PASSWORD) as emulator:
        yield emulator
        emulator.check()


def test_a_caller_is_served_over_https_and_wss_with_ca_bundle(
    asterisk: Ari, sandbox_ca: Path, tls_crm: CrmEmulator, tmp_path: Path
) -> None:
    name = f"stasis-dnd-tls-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, name, tls_crm, sandbox_ca)
    app = RunningApp(config)
    caller = ""
    try:
        app.wait_log("event=ari_connected", timeout=20)
        log = app.text()
        assert f"event=asterisk_found url={ARI_URL} version=22." in log  # REST over https
        assert f"event=ari_events_open url=wss://127.0.0.1:{TLS_PORT}/ari/events?app={name}" in log
        caller = asterisk.originate_caller(
            "press1after4", variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"}
        )
        assert asterisk.wait_gone(caller, CALL_TIMEOUT)
        app.wait_log(f"event=call channel={caller}")
        assert "outcome=callback ending=hung_up" in app.text()  # its events came over wss
        assert tls_crm.wait_for(lambda c: len(c.requests) >= 1)
    finally:
        if caller:
            asterisk.hangup_quietly(caller)
        assert app.stop() == 0, app.text()
    assert_filed_once(config, tls_crm, "+79001234567")
    assert "Traceback" not in app.text()


def test_without_ca_bundle_the_certificate_is_refused_in_one_sentence(
    asterisk: Ari, sandbox_ca: Path, tls_crm: CrmEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "untrusting", tls_crm, None)
    for command, status in (("check", 3), ("run", 1)):
        result = subprocess.run(
            stasis_dnd(command, "--config", str(config)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=clean_env(),
        )
        assert result.returncode == status, result.stdout + result.stderr
        assert result.stderr.splitlines() == [
            f"stasis-dnd: ARI at {ARI_URL}/ari presented a certificate not signed by a "
            "trusted CA (unable to get local issuer certificate): set [ari] ca_bundle to the "
            "PEM file of the CA that signed Asterisk's certificate (for a self-signed "
            "certificate, the certificate itself)."
        ], command
