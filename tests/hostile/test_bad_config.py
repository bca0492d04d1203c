"""Configuration mistakes through the real command line: each one is a single
clear line on stderr and exit status 1 (2 for a wrong command line), never a
traceback. (What tests/test_config.py checks of `load_settings` is not
repeated here.)"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_kit import App, run_cli, write_config

GOOD = "[ari]\npassword = a-secret\n[crm]\nusername = robot\npassword = c-secret\n"
# Runs the command without root's power to read any file, as a service user would.
NO_FILE_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("stasis-dnd: ")
    for needle in needles:
        assert needle in line


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "stasis-dnd.ini"
    path.write_text(GOOD)
    path.chmod(0o600)
    return path


FILES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "binary garbage": (
        bytes(random.Random(7).randrange(128, 256) for _ in range(512)),
        ("cannot be read", "utf-8"),
    ),
    "text garbage with NULs": (b"\x00\x01\x02 garbage \x00", ("not a valid INI file",)),
    "duplicate key": (
        (GOOD + "[ivr]\nattempts = 1\nattempts = 2\n").encode(),
        ("not a valid INI file", "'attempts'", "already exists"),
    ),
    "duplicate section": (
        (GOOD + "[ari]\nusername = x\n").encode(),
        ("not a valid INI file", "'ari'", "already exists"),
    ),
    "key outside a section": (b"password = x\n" + GOOD.encode(), ("not a valid INI file",)),
    "missing section": (b"[ari]\npassword = a-secret\n", ("[crm] password is not set",)),
    "empty file": (b"", ("[ari] password is not set",)),
    "section header typo": (GOOD.replace("[crm]", "[crm").encode(), ("not a valid INI file",)),
}


@pytest.mark.parametrize("case", FILES, ids=list(FILES))
def test_broken_config_files(case: str, config: Path) -> None:
    content, needles = FILES[case]
    config.write_bytes(content)
    assert_one_clear_line(run_cli("check-config", "--config", str(config)), str(config), *needles)


def test_a_byte_order_mark_is_not_a_mistake(config: Path) -> None:
    # Windows Notepad writes one at the start of the file.
    config.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{config}: OK"


def test_unreadable_config_file(config: Path) -> None:
    config.chmod(0o000)
    result = run_cli("check-config", "--config", str(config), prefix=NO_FILE_OVERRIDE)
    assert_one_clear_line(result, str(config), "cannot be read", "Permission denied")


def test_a_directory_instead_of_a_file(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(tmp_path))
    assert_one_clear_line(result, str(tmp_path), "cannot be read", "Is a directory")


def test_a_password_file_that_is_a_directory(config: Path, tmp_path: Path) -> None:
    config.write_text(GOOD.replace("password = c-secret", f"password_file = {tmp_path}"))
    result = run_cli("check-config", "--config", str(config))
    assert_one_clear_line(result, "[crm] password_file", "cannot read password file")


ENVIRONMENT: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "unknown key": (
        {"STASIS_DND_ARI_PASWORD": "x"},
        ("STASIS_DND_ARI_PASWORD", "[ari] has no key 'pasword'"),
    ),
    "not a number": (
        {"STASIS_DND_IVR_ATTEMPTS": "many"},
        ("STASIS_DND_IVR_ATTEMPTS", "expected a whole number"),
    ),
    "not a URL": ({"STASIS_DND_CRM_URL": "ftp://crm"}, ("STASIS_DND_CRM_URL", "http or https")),
    "empty password overrides the file": (
        {"STASIS_DND_CRM_PASSWORD": ""},
        ("[crm] password is not set", "STASIS_DND_CRM_PASSWORD"),
    ),
}


@pytest.mark.parametrize("case", ENVIRONMENT, ids=list(ENVIRONMENT))
def test_environment_mistakes(case: str, config: Path) -> None:
    env, needles = ENVIRONMENT[case]
    assert_one_clear_line(run_cli("check-config", "--config", str(config), env=env), *needles)


def test_config_named_by_the_environment_does_not_exist() -> None:
    result = run_cli("check-config", env={"STASIS_DND_CONFIG": "/nonexistent/stasis-dnd.ini"})
    assert_one_clear_line(result, "/nonexistent/stasis-dnd.ini", "does not exist")


def test_run_stops_at_a_mistake_before_connecting(config: Path) -> None:
    result = run_cli("run", "--config", str(config), env={"STASIS_DND_IVR_DIGIT_TIMEOUT": "soon"})
    assert_one_clear_line(result, "STASIS_DND_IVR_DIGIT_TIMEOUT", "expected a number")
    assert result.stdout == ""


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_run_with_a_metrics_port_in_use(tmp_path: Path, taken_port: int) -> None:
    config = write_config(tmp_path, None, None, {"metrics": {"listen": f"127.0.0.1:{taken_port}"}})
    app = App(config).start()
    assert app.exit_status() == 1
    assert "Traceback" not in app.text()
    assert f"stasis-dnd: [metrics] listen 127.0.0.1:{taken_port}: Address already in use" in (
        app.text()
    )


def test_run_with_an_outbox_path_that_is_a_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path, None, None, {"outbox": {"path": tmp_path}})
    app = App(config).start()
    assert app.exit_status() == 1
    out = app.text()
    assert "Traceback" not in out
    assert f"stasis-dnd: {config}: [outbox] path: cannot open the outbox {tmp_path}" in out


def test_run_with_an_unknown_log_level_in_the_environment(config: Path) -> None:
    result = run_cli("run", "--config", str(config), env={"STASIS_DND_LOG_LEVEL": "verbose"})
    assert_one_clear_line(result, "STASIS_DND_LOG_LEVEL", "verbose")


def test_a_password_that_is_not_utf8_in_the_environment(config: Path) -> None:
    not_utf8 = os.fsdecode(b"caf\xe9")  # Latin-1 from an old shell profile
    result = run_cli(
        "check-config", "--config", str(config), env={"STASIS_DND_ARI_PASSWORD": not_utf8}
    )
    assert_one_clear_line(result, "STASIS_DND_ARI_PASSWORD", "UTF-8")


@pytest.mark.parametrize("workers", ["0", "-3", "many"])
def test_run_refuses_a_worker_count_below_one(workers: str, tmp_path: Path) -> None:
    # The config does not exist: the command line is judged before any file is read.
    result = run_cli("run", "--config", str(tmp_path / "missing.ini"), "--workers", workers)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stasis-dnd run: error: argument --workers: ")
    assert "at least 1" in last
    assert last.endswith(f"got {workers!r}")
