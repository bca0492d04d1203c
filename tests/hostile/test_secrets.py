"""Secrets under `stasis-dnd run`: the ARI and CRM passwords appear in no log
line at any level, no error, no metric, no `outbox list`, not on the command
line and not in the WebSocket URL; a config others can read is warned about;
https to the CRM and https/wss to ARI verify certificates and work, with
`[ari] ca_bundle` for an Asterisk whose CA the system does not trust."""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests
import trustme
from hostile_kit import (
    APP,
    ARI_PASSWORD,
    ARI_USER,
    CRM_PASSWORD,
    CRM_USER,
    SHORT_SOUNDS,
    App,
    requested,
    run_cli,
    write_config,
)

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import SERVER_ERROR
from stasis_dnd.testing.fake_asterisk import (
    CALLER_HUNG_UP,
    HUNGUP_BY_APP,
    FakeAsterisk,
    hang_up,
    press,
)

Launch = Callable[..., App]


def secret_forms() -> set[str]:
    """Each password as it could leak: as is, URL-encoded, and inside a Basic header."""
    forms = set()
    for user, password in ((ARI_USER, ARI_PASSWORD), (CRM_USER, CRM_PASSWORD)):
        forms |= {password, quote(password, safe=""), quote_plus(password)}
        forms.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    return forms


def assert_no_secret(where: str, text: str) -> None:
    for secret in secret_forms():
        assert secret not in text, f"{secret!r} in {where}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("method", ["post", "get"])
def test_a_day_at_debug_level_shows_no_password_anywhere(
    method: str, fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        fake,
        crm,
        {"crm": {"method": method}, "metrics": {"listen": f"127.0.0.1:{port}"}},
    )
    app = launch(config, log_level="debug")
    with open(f"/proc/{app.pid}/cmdline", "rb") as cmdline:
        command_line = cmdline.read().decode()

    crm.script(SERVER_ERROR)  # the first delivery fails
    pressed = fake.place_call("+79001234567", script=press("1", after=0.1))
    silent = fake.place_call("+79001234568", script=[])
    gone = fake.place_call("+79001234569", script=hang_up(0.1, when="playback_start"))
    assert pressed.wait_done(20) == HUNGUP_BY_APP
    assert silent.wait_done(20) == HUNGUP_BY_APP
    assert gone.wait_done(20) == CALLER_HUNG_UP
    crm.outage()  # then the CRM is down for a while
    later = fake.place_call("+79001234570", script=press("1", after=0.1))
    assert later.wait_done(20) == HUNGUP_BY_APP
    app.wait_log("Connection refused")
    crm.restore()
    assert crm.wait_for(lambda c: len(c.delivered()) == 2, 30)
    app.wait_log("event=call channel=", count=4)

    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    listing = run_cli("outbox", "list", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    assert app.stop() == 0
    # The paths that could leak were taken: debug ARI lines, CRM failures, the table.
    log = app.text()
    assert "level=DEBUG" in log and "event=crm_unavailable" in log
    assert "+79001234567" in listing.stdout and "delivered" in listing.stdout
    assert "stasis_dnd_calls_total" in metrics
    outputs = {
        "the app's output": log,
        "the metrics": metrics,
        "outbox list": listing.stdout + listing.stderr,
        "the command line": command_line,
        "the WebSocket URL": "\n".join(fake.event_urls()),
        "the outbox file": (tmp_path / "outbox.sqlite3").read_bytes().decode("latin-1"),
    }
    assert fake.event_urls() == ["/ari/events?app=stasis-dnd&subscribeAll=false"]
    for where, text in outputs.items():
        assert_no_secret(where, text)


def test_credentials_written_into_the_urls_are_refused_without_echoing_them(
    fake: FakeAsterisk, crm: CrmEmulator, tmp_path: Path
) -> None:
    ari_url = fake.url.replace("http://", f"http://{ARI_USER}:{ARI_PASSWORD}@")
    crm_url = crm.url.replace("http://", f"http://{CRM_USER}:{CRM_PASSWORD}@")
    for section, url in (("ari", ari_url), ("crm", crm_url)):
        config = write_config(tmp_path, fake, crm, {section: {"url": url}})
        for command in ("check-config", "run"):
            result = run_cli(command, "--config", str(config))
            assert result.returncode == 1, result.stdout + result.stderr
            assert "Traceback" not in result.stderr
            assert f"[{section}] url" in result.stderr
            assert "must not contain a user or password" in result.stderr
            assert_no_secret(f"{command} with credentials in [{section}] url", result.stderr)


def test_a_config_others_can_read_is_warned_about(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake, crm)
    config.chmod(0o644)
    checked = run_cli("check-config", "--config", str(config))
    assert checked.returncode == 0
    assert f"warning: {config} is readable by every user on this machine; chmod 640 it" in (
        checked.stderr
    )
    app = launch(config)
    assert "level=WARNING event=config_warning" in app.text()
    assert app.stop() == 0
    config.chmod(0o640)
    quiet = run_cli("check-config", "--config", str(config))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_https_to_the_crm_verifies_its_certificate(
    fake: FakeAsterisk, launch: Launch, tmp_path: Path, ca: trustme.CA, ca_file: Path
) -> None:
    with CrmEmulator(CRM_USER, CRM_PASSWORD, tls=server_context(ca)) as crm:
        assert crm.url.startswith("https://")
        config = write_config(tmp_path, fake, crm)
        app = launch(config, label="untrusting")
        call = fake.place_call("+79001234567", script=press("1", after=0.1))
        assert call.wait_done(20) == HUNGUP_BY_APP  # stored: the promise is kept
        app.wait_log("error='unavailable: TLS: ")
        assert app.stop() == 0
        assert crm.requests == []  # nothing crossed an unverified connection
        # The admin adds the CRM's CA to the system's trust store.
        trusting = launch(config, label="trusting", env={"SSL_CERT_FILE": str(ca_file)})
        assert crm.wait_for(lambda c: len(c.delivered()) == 1, 20)
        assert trusting.stop() == 0
        assert crm.delivered_phones() == ["+79001234567"]
        crm.check()


UNTRUSTED = "presented a certificate not signed by a trusted CA"
SET_CA_BUNDLE = "set [ari] ca_bundle to the PEM file of the CA that signed Asterisk's certificate"


def test_ari_over_https_and_wss(
    tmp_path: Path, crm: CrmEmulator, ca: trustme.CA, ca_file: Path
) -> None:
    with FakeAsterisk(ARI_USER, ARI_PASSWORD, APP, SHORT_SOUNDS, tls=server_context(ca)) as fake:
        assert fake.url.startswith("https://")
        # An Asterisk with a private CA and no [ari] ca_bundle: one sentence, exit 1.
        config = write_config(tmp_path, fake, crm)
        for command, status in (("run", 1), ("check", 3)):
            refused = run_cli(command, "--config", str(config))
            assert refused.returncode == status, refused.stdout + refused.stderr
            assert refused.stderr.splitlines() == [
                f"stasis-dnd: ARI at {fake.url}/ari {UNTRUSTED} (unable to get local issuer "
                f"certificate): {SET_CA_BUNDLE} (for a self-signed certificate, the "
                "certificate itself)."
            ]
        assert not fake.connected and fake.event_urls() == []

        # The admin points [ari] ca_bundle at the CA: REST over https, events over wss.
        trusting = write_config(
            tmp_path, fake, crm, {"ari": {"ca_bundle": ca_file}}, name="trusting.ini"
        )
        checked = run_cli("check", "--config", str(trusting))
        assert f"(certificate verified against {ca_file})" in checked.stdout, checked.stderr
        app = App(trusting, label="trusting", log_level="debug").start()
        try:
            app.wait_log("event=ari_connected")
            assert f"event=asterisk_found url={fake.url} " in app.text()
            assert "url=wss://127.0.0.1:" in app.text()
            call = fake.place_call("+79001234567", script=press("1", after=0.1))
            assert call.wait_done(20) == HUNGUP_BY_APP
            assert call.media_heard() == requested("+79001234567")
            assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])
        finally:
            assert app.stop() == 0
        assert "Traceback" not in app.text()
        # Without ca_bundle, a CA added to the system's trust store is trusted too.
        system = run_cli("check", "--config", str(config), env={"SSL_CERT_FILE": str(ca_file)})
        assert "(certificate verified against the system's CAs)" in system.stdout, system.stderr
        fake.check()


def test_check_config_show_prints_no_crm_token(tmp_path: Path) -> None:
    token = "t0k3n-only-the-crm-knows"
    url = f"http://127.0.0.1:9/dynamic.do?apikey={token}-in-url"
    config = write_config(
        tmp_path, None, None, {"crm": {"url": url, "params": f"token={token}&source=ivr"}}
    )
    result = run_cli("check-config", "--config", str(config), "--show")
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    assert "crm.params = token, source (values not shown)" in shown
    assert token not in shown
    assert_no_secret("check-config --show", shown)
