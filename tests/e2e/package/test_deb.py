"""The Debian package on a real systemd, as an administrator uses it.

A clean Debian 12 gets `apt install ./stasis-dnd_<version>_all.deb`; the
service is enabled but stays stopped on the sample's placeholders; with real
settings (the sandbox Asterisk, a CRM emulator) it serves a call; an upgrade
while a request waits for a CRM that is down loses nothing; `systemctl stop`
drains; `apt purge` leaves nothing behind. The README's install commands are
the ones run here. The sandbox Asterisk is tests/e2e's (`asterisk`). Needs
root, and the first time network to Debian's mirror.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_kit import CALL_TIMEOUT, CRM_PASSWORD, CRM_USER
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sandbox"))  # systemd_kit builds on the sandbox's helpers

from systemd_kit import (  # noqa: E402
    NEWER,
    Container,
    Debs,
    copy_checkout,
    cp_into,
    pip_settings,
    provision,
)

pytestmark = pytest.mark.e2e

CONFIG = "/etc/stasis-dnd/stasis-dnd.ini"
OUTBOX = "/var/lib/stasis-dnd/outbox.sqlite3"


def _build(version: str | None) -> Path:
    env = {**os.environ}
    if version:
        env["STASIS_DND_DEB_VERSION"] = version
    result = subprocess.run(
        [str(REPO / "scripts" / "deb")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def debs() -> Debs:
    """scripts/deb's package (in dist/), and the same tree built as a newer version."""
    return Debs(_build(None), _build(NEWER))


@pytest.fixture(scope="session")
def systemd_root() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the package test needs root (debootstrap, unshare, chroot)", pytrace=False)
    return provision()


@pytest.fixture
def container(systemd_root: Path) -> Iterator[Container]:
    """A clean Debian 12 with systemd running as its PID 1."""
    booted = Container(systemd_root)
    try:
        booted.boot()
        yield booted
    finally:
        booted.destroy()


@pytest.fixture
def emulator() -> Iterator[CrmEmulator]:
    with CrmEmulator(CRM_USER, CRM_PASSWORD) as crm:
        yield crm


def real_settings(ari: Ari, crm: CrmEmulator, app: str, extra: str = "") -> str:
    return (
        f"[ari]\nurl = {ari.base.removesuffix('/ari')}\nusername = {ari.user}\n"
        f"password = {ari.password}\napp = {app}\ndrain_timeout = 5s\n"
        f"[crm]\nurl = {crm.url}\nusername = {CRM_USER}\npassword = {CRM_PASSWORD}\n{extra}"
    )


def place_call(ari: Ari, app: str, number: str) -> str:
    return ari.originate_caller(
        "press1after4", number=number, variables={"DND_APP": app, "DND_QUEUE_TIMEOUT": "1"}
    )


def stat(box: Container, path: str) -> str:
    return box.run(f"stat -c '%U:%G %a' {path}").stdout.strip()


def test_install_serve_upgrade_stop_purge(
    container: Container, debs: Debs, asterisk: Ari, emulator: CrmEmulator
) -> None:
    app = f"stasis-dnd-deb-{uuid.uuid4().hex[:8]}"
    install_on_placeholders(container, debs)
    serve_a_call(container, asterisk, emulator, app)
    upgrade_with_a_request_pending(container, debs, asterisk, emulator, app)
    an_instance_has_its_own_outbox(container, asterisk, emulator, f"{app}-pbx2")
    stop_remove_purge(container)


def install_on_placeholders(box: Container, debs: Debs) -> None:
    """Enabled, not started; one line says what to edit and how to start."""
    box.path("/root/dist").mkdir()
    cp_into(box, debs.first, f"/root/dist/{debs.first.name}")
    installed = box.run(f"apt install -y ./dist/{debs.first.name}")
    assert (
        "stasis-dnd is not started: /etc/stasis-dnd/stasis-dnd.ini: [ari] password still "
        "holds the sample's placeholder"
    ) in installed.stdout, installed.stdout + installed.stderr
    assert "then run: systemctl start stasis-dnd" in installed.stdout
    assert box.run("systemctl is-enabled stasis-dnd").stdout.strip() == "enabled"
    assert box.run("systemctl is-active stasis-dnd", check=False).stdout.strip() == "inactive"
    assert stat(box, CONFIG) == "root:stasis-dnd 640"
    assert stat(box, "/var/lib/stasis-dnd") == "stasis-dnd:stasis-dnd 750"
    assert box.run("getent passwd stasis-dnd").stdout.strip().endswith(":/usr/sbin/nologin")
    assert box.path("/usr/share/man/man8/stasis-dnd.8.gz").is_file()
    assert box.path("/usr/share/asterisk/sounds/ru/custom/IVR_DND_OPERATORS.sln16").is_file()
    assert "Documentation=man:stasis-dnd(8)" in box.run("systemctl cat stasis-dnd").stdout
    # FreePBX's sounds folder gets the prompts from the package's copy.
    box.run("mkdir -p /var/lib/asterisk/sounds")
    box.run("stasis-dnd install-sounds /var/lib/asterisk/sounds")
    assert box.path("/var/lib/asterisk/sounds/en/custom/IVR_DND_OPERATORS.ulaw").is_file()
    box.run("rm -r /var/lib/asterisk")
    # Started anyway, it refuses the placeholders and gives up instead of looping.
    box.run("systemctl start stasis-dnd")
    box.wait("systemctl is-failed stasis-dnd", "failed")
    journal = box.run("journalctl -u stasis-dnd --no-pager").stdout
    assert "[ari] password still holds the sample's placeholder" in journal


def serve_a_call(box: Container, asterisk: Ari, emulator: CrmEmulator, app: str) -> None:
    # Edited in place, as an admin does: owner and mode stay.
    box.path(CONFIG).write_text(real_settings(asterisk, emulator, app))
    assert stat(box, CONFIG) == "root:stasis-dnd 640"
    box.run("stasis-dnd check-config")
    box.run("stasis-dnd check")
    box.run("systemctl reset-failed stasis-dnd && systemctl start stasis-dnd")
    box.wait("journalctl -u stasis-dnd --no-pager", "event=ari_connected url=")
    caller = place_call(asterisk, app, "+79001110001")
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    assert emulator.wait_for(lambda c: c.delivered_phones() == ["+79001110001"], 30)
    assert stat(box, OUTBOX).startswith("stasis-dnd:stasis-dnd ")


def upgrade_with_a_request_pending(
    box: Container, debs: Debs, asterisk: Ari, emulator: CrmEmulator, app: str
) -> None:
    """The CRM is down, a request waits in the outbox, the package is upgraded."""
    emulator.outage()
    caller = place_call(asterisk, app, "+79001110002")
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    box.wait("stasis-dnd outbox list --state pending", "+79001110002")
    before = box.run("systemctl show -p MainPID --value stasis-dnd").stdout.strip()
    cp_into(box, debs.newer, f"/root/dist/{debs.newer.name}")
    box.run(f"apt install -y ./dist/{debs.newer.name}")
    assert NEWER in box.run("dpkg-query -W -f '${Version}' stasis-dnd").stdout
    assert box.run("systemctl is-active stasis-dnd").stdout.strip() == "active"
    assert box.run("systemctl show -p MainPID --value stasis-dnd").stdout.strip() != before
    journal = box.run("journalctl -u stasis-dnd --no-pager").stdout
    assert "event=stopping calls=0" in journal and "event=stopped" in journal
    emulator.restore()
    assert emulator.wait_for(
        lambda c: c.delivered_phones() == ["+79001110001", "+79001110002"], 120
    ), emulator.requests
    assert "+79001110002" not in box.run("stasis-dnd outbox list --state pending").stdout


def an_instance_has_its_own_outbox(
    box: Container, asterisk: Ari, emulator: CrmEmulator, app: str
) -> None:
    box.path("/etc/stasis-dnd/pbx2.ini").write_text(real_settings(asterisk, emulator, app))
    box.run("chgrp stasis-dnd /etc/stasis-dnd/pbx2.ini && chmod 640 /etc/stasis-dnd/pbx2.ini")
    box.run("systemctl enable --now stasis-dnd@pbx2")
    box.wait("journalctl -u stasis-dnd@pbx2 --no-pager", "event=ari_connected url=")
    caller = place_call(asterisk, app, "+79001110003")
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    assert emulator.wait_for(lambda c: "+79001110003" in c.delivered_phones(), 30)
    assert box.path("/var/lib/stasis-dnd/pbx2/outbox.sqlite3").is_file()
    listed = box.run(
        "STATE_DIRECTORY=/var/lib/stasis-dnd/pbx2 stasis-dnd outbox list "
        "--config /etc/stasis-dnd/pbx2.ini"
    ).stdout
    assert "+79001110003" in listed and "+79001110001" not in listed, listed
    box.run("systemctl disable --now stasis-dnd@pbx2 && rm /etc/stasis-dnd/pbx2.ini")


def stop_remove_purge(box: Container) -> None:
    # systemctl stop drains (SIGTERM, a clean exit) rather than being killed.
    box.run("systemctl stop stasis-dnd")
    show = box.run("systemctl show -p Result -p ExecMainStatus stasis-dnd").stdout
    assert "Result=success" in show and "ExecMainStatus=0" in show, show
    # remove keeps config and outbox; purge with nothing pending leaves nothing.
    box.run("apt remove -y stasis-dnd")
    assert box.path(CONFIG).is_file() and box.path(OUTBOX).is_file()
    purged = box.run("apt purge -y stasis-dnd")
    for gone in ("/etc/stasis-dnd", "/var/lib/stasis-dnd", "/usr/bin/stasis-dnd"):
        assert not box.path(gone).exists(), (gone, purged.stdout)
    assert box.run("getent passwd stasis-dnd", check=False).returncode == 2
    assert "stasis-dnd" not in box.run("dpkg-statoverride --list", check=False).stdout
    leftovers = box.run("find /etc /lib/systemd /var/lib -name '*stasis-dnd*'").stdout.strip()
    assert leftovers == "", leftovers


def test_the_pip_way_with_a_generated_unit(
    container: Container, asterisk: Ari, emulator: CrmEmulator
) -> None:
    """The README's pip install on Debian 12: a venv, the units for it, the user."""
    box = container
    shutil.copy("/etc/resolv.conf", box.path("/etc/resolv.conf"))  # pip reaches PyPI
    copy_checkout(box, REPO, "/root/stasis-dnd")
    sample = "stasis-dnd/stasis-dnd.ini.sample"
    for command in (
        "apt install -y python3-venv",
        "python3 -m venv /opt/stasis-dnd",
        "/opt/stasis-dnd/bin/pip install ./stasis-dnd",
        "/opt/stasis-dnd/bin/stasis-dnd install-unit",
        "systemctl daemon-reload",
        "adduser --system --group --home /var/lib/stasis-dnd --no-create-home stasis-dnd",
        "install -d /etc/stasis-dnd",
        f"install -m 640 -g stasis-dnd {sample} /etc/stasis-dnd/stasis-dnd.ini",
    ):
        box.run(command, timeout=600, env=pip_settings(box))
    refused = box.run("/opt/stasis-dnd/bin/stasis-dnd check-config", check=False)
    assert refused.returncode == 1
    assert "still holds the sample's placeholder" in refused.stderr
    app = f"stasis-dnd-pip-{uuid.uuid4().hex[:8]}"
    box.path(CONFIG).write_text(real_settings(asterisk, emulator, app))
    box.run("/opt/stasis-dnd/bin/stasis-dnd check-config")
    box.run("systemctl enable --now stasis-dnd")
    unit = box.run("systemctl cat stasis-dnd").stdout
    assert "ExecStart=/opt/stasis-dnd/bin/stasis-dnd run --config " in unit
    box.wait("journalctl -u stasis-dnd --no-pager", "event=ari_connected url=")
    caller = place_call(asterisk, app, "+79001110004")
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    assert emulator.wait_for(lambda c: c.delivered_phones() == ["+79001110004"], 30)
    assert stat(box, OUTBOX).startswith("stasis-dnd:stasis-dnd ")
    box.run("systemctl stop stasis-dnd")


def test_purge_keeps_an_outbox_with_a_request_not_delivered(
    container: Container, debs: Debs, asterisk: Ari, emulator: CrmEmulator
) -> None:
    box = container
    cp_into(box, debs.first, f"/root/{debs.first.name}")
    box.run(f"apt install -y ./{debs.first.name}")
    app = f"stasis-dnd-deb-{uuid.uuid4().hex[:8]}"
    box.path(CONFIG).write_text(real_settings(asterisk, emulator, app))
    emulator.outage()
    box.run("systemctl start stasis-dnd")
    box.wait("journalctl -u stasis-dnd --no-pager", "event=ari_connected url=")
    caller = place_call(asterisk, app, "+79001110005")
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    box.wait("stasis-dnd outbox list --state pending", "+79001110005")
    purged = box.run("apt purge -y stasis-dnd")
    assert f"stasis-dnd: kept {OUTBOX}: 1 request(s) not delivered to the CRM" in purged.stdout, (
        purged.stdout + purged.stderr
    )
    assert box.path(OUTBOX).is_file()
    assert not box.path(CONFIG).exists()
    assert box.run("getent passwd stasis-dnd").returncode == 0  # the file's owner stays
