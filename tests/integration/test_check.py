"""`stasis-dnd check`: prompts on the Asterisk, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stasis_dnd.cli.check import configured_sounds
from stasis_dnd.config import load_settings
from stasis_dnd.testing.fake_asterisk import FakeAsterisk


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


def test_check_reports_every_prompt(config: Path, fake: FakeAsterisk) -> None:
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok      sound custom/IVR_DND_OPERATORS: en, ru" in result.stdout
    assert "ok      sound vm-goodbye" in result.stdout


def test_check_names_a_missing_prompt(config: Path, fake: FakeAsterisk) -> None:
    config.write_text(config.read_text() + "[ivr]\nprompt = custom/NOT_RECORDED\n")
    result = run_check(config)
    assert result.returncode == 1
    assert "MISSING sound custom/NOT_RECORDED: missing on this Asterisk" in result.stdout
    assert "install-sounds" in result.stdout


def test_check_wrong_password_is_one_line(config: Path, fake: FakeAsterisk) -> None:
    config.write_text(config.read_text().replace("ari-Secret-4711", "Wr0ng-Passw0rd"))
    result = run_check(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Wr0ng-Passw0rd" not in result.stderr


def test_check_unreachable_asterisk(tmp_path: Path, config: Path, fake: FakeAsterisk) -> None:
    fake.stop_server()
    result = run_check(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert fake.url.split("//")[1] in result.stderr
