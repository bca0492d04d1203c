"""`stasis-dnd check`: prompts on the Asterisk, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytest_httpserver import HTTPServer

from stasis_dnd.cli.check import configured_sounds
from stasis_dnd.config import load_settings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import FakeAsterisk

# Exit statuses of `stasis-dnd check`: which check failed.
ARI_FAILED, PROMPT_MISSING, CRM_FAILED = 3, 4, 5


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stasis_dnd", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_configured_sounds() -> None:
    settings = load_settings(
        None,
        env={
            "STASIS_DND_IVR_CONFIRMATION": "sound:custom/X",
            "STASIS_DND_IVR_SORRY": "recording:r",
        },
        require_secrets=False,
    )
    assert configured_sounds(settings) == ["custom/IVR_DND_OPERATORS", "vm-goodbye", "custom/X"]


def test_check_reports_every_prompt_and_the_crm(
    config: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok      sound custom/IVR_DND_OPERATORS: en, ru" in result.stdout
    assert "ok      sound vm-goodbye" in result.stdout
    assert (
        f"ok      CRM at {crm.url}/admin/dynamic.do: answers as BGCRM/BGERP and accepts "
        "the login of 'robot'"
    ) in result.stdout
    # It logged in without filing anything: no class, no number.
    (probe,) = crm.requests
    assert probe.param("class") is None and probe.param("aon") is None
    assert probe.param("responseType") == "json" and probe.method == "POST"


def test_check_says_the_crm_refused_the_login(config: Path, fake: FakeAsterisk) -> None:
    config.write_text(config.read_text().replace("crm-Secret-0815", "Wr0ng-Passw0rd"))
    result = run_check(config)
    assert result.returncode == CRM_FAILED, result.stdout + result.stderr
    assert "FAILED  CRM at " in result.stdout
    assert "refused the login of 'robot'" in result.stdout
    assert "Wr0ng-Passw0rd" not in result.stdout + result.stderr


def test_check_says_the_crm_is_unreachable(
    config: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    crm.outage()
    result = run_check(config)
    assert result.returncode == CRM_FAILED, result.stdout + result.stderr
    assert f"FAILED  CRM at {crm.url}/admin/dynamic.do: not reachable" in result.stdout


def test_check_says_a_url_that_is_not_the_crm(
    config: Path, fake: FakeAsterisk, crm: CrmEmulator, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/admin/dynamic.do").respond_with_data(
        "<html><body>It works!</body></html>", content_type="text/html"
    )
    config.write_text(config.read_text().replace(crm.url, httpserver.url_for("").rstrip("/")))
    result = run_check(config)
    assert result.returncode == CRM_FAILED, result.stdout + result.stderr
    assert (
        "/admin/dynamic.do: does not answer like BGCRM/BGERP (answer is not JSON (text/html)); "
        "check [crm] url and style"
    ) in result.stdout


def test_check_names_a_missing_prompt(config: Path, fake: FakeAsterisk) -> None:
    config.write_text(config.read_text() + "[ivr]\nprompt = custom/NOT_RECORDED\n")
    result = run_check(config)
    assert result.returncode == PROMPT_MISSING
    assert "MISSING sound custom/NOT_RECORDED: missing on this Asterisk" in result.stdout
    assert "install-sounds" in result.stdout


def test_check_wrong_password_is_one_line(config: Path, fake: FakeAsterisk) -> None:
    config.write_text(config.read_text().replace("ari-Secret-4711", "Wr0ng-Passw0rd"))
    result = run_check(config)
    assert result.returncode == ARI_FAILED
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Wr0ng-Passw0rd" not in result.stderr


def test_check_unreachable_asterisk(tmp_path: Path, config: Path, fake: FakeAsterisk) -> None:
    fake.stop_server()
    result = run_check(config)
    assert result.returncode == ARI_FAILED
    assert "Traceback" not in result.stderr
    assert fake.url.split("//")[1] in result.stderr
