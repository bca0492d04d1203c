"""`stasis-dnd check`: prompts on the Asterisk, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from harness import APP, ARI_PASSWORD, ARI_USER
from pytest_httpserver import HTTPServer

from stasis_dnd.cli.check import (
    ALWAYS_PLAYED,
    CLOSED_SOUNDS,
    ENTRY_SOUNDS,
    HIDDEN_NUMBER_SOUNDS,
    INSTALL_DIGITS,
    INSTALL_PROMPTS,
    NEXT_DAY_SOUNDS,
    READBACK_SOUNDS,
    configured_sounds,
)
from stasis_dnd.config import load_settings
from stasis_dnd.settings import IvrSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import DEFAULT_SOUNDS, PREVIOUS_SOUNDS, FakeAsterisk

# Exit statuses of `stasis-dnd check`: which check failed.
ARI_FAILED, PROMPT_MISSING, CRM_FAILED = 3, 4, 5

SHIPPED = (
    "custom/IVR_DND_OPERATORS",
    "custom/IVR_DND_CALLBACK_CONFIRMED",
    "custom/IVR_DND_ALREADY_REQUESTED",
    "custom/IVR_DND_READBACK",
    "custom/IVR_DND_READBACK_MENU",
    "custom/IVR_DND_ENTER_NUMBER",
    "custom/IVR_DND_NUMBER_INVALID",
    "custom/IVR_DND_NO_NUMBER",
)
DIGITS = tuple(f"digits/{digit}" for digit in range(10))
# An Asterisk with the prompts installed and its core sounds.
EVERY_SOUND = {**DEFAULT_SOUNDS, **dict.fromkeys(SHIPPED + DIGITS, 1.0)}
DIGITS_LINE = "sounds digits/0..digits/9 (the read-back says the number)"


@pytest.fixture
def fake_sounds() -> dict[str, float]:
    return EVERY_SOUND


@pytest.fixture
def fake_languages() -> tuple[str, ...]:
    return ("en", "ru")


@pytest.fixture
def fake(fake_sounds: dict[str, float], fake_languages: tuple[str, ...]) -> Iterator[FakeAsterisk]:
    with FakeAsterisk(ARI_USER, ARI_PASSWORD, APP, fake_sounds, languages=fake_languages) as server:
        yield server
        server.check()


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stasis_dnd", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ivr(**values: str) -> list[str]:
    env = {f"STASIS_DND_IVR_{name.upper()}": value for name, value in values.items()}
    return configured_sounds(load_settings(None, env=env, require_secrets=False))


def test_configured_sounds_by_default_are_every_shipped_prompt_and_sorry_goodbye() -> None:
    assert ivr() == [
        "custom/IVR_DND_OPERATORS",
        "sorry-youre-having-problems",
        "vm-goodbye",
        "custom/IVR_DND_CALLBACK_CONFIRMED",
        "custom/IVR_DND_ALREADY_REQUESTED",
        "custom/IVR_DND_READBACK",
        "custom/IVR_DND_READBACK_MENU",
        "custom/IVR_DND_ENTER_NUMBER",
        "custom/IVR_DND_NUMBER_INVALID",
        "custom/IVR_DND_NO_NUMBER",
    ]


def test_configured_sounds_skip_empty_other_media_and_repeats() -> None:
    assert ivr(
        confirmation="sound:custom/X",
        sorry="recording:r",
        invalid_prompt="vm-goodbye",
        already_requested="",
        readback="no",
        hidden_number_entry="no",
    ) == ["custom/IVR_DND_OPERATORS", "vm-goodbye", "custom/X"]


@pytest.mark.parametrize(
    ("readback", "hidden_number_entry", "expected"),
    [
        ("yes", "no", READBACK_SOUNDS + ENTRY_SOUNDS),
        ("no", "yes", ENTRY_SOUNDS + HIDDEN_NUMBER_SOUNDS),
        ("no", "no", ()),
    ],
)
def test_configured_sounds_follow_the_switches(
    readback: str, hidden_number_entry: str, expected: tuple[str, ...]
) -> None:
    # Entry prompts serve change_digit after the read-back as well as a hidden number.
    settings = IvrSettings(
        readback=readback == "yes", hidden_number_entry=hidden_number_entry == "yes"
    )
    defaults = [getattr(settings, name) for name in (*ALWAYS_PLAYED, *expected)]
    assert ivr(readback=readback, hidden_number_entry=hidden_number_entry) == [
        name for name in defaults if name
    ]


@pytest.mark.parametrize(
    ("values", "extra"),
    [
        ({"outside_hours": "announce"}, ["custom/IVR_DND_CLOSED"]),
        ({"outside_hours": "announce", "hours": "mon 09:00-18:00"}, ["custom/IVR_DND_CLOSED"]),
        ({"hours": "mon 09:00-18:00"}, ["custom/IVR_DND_CALLBACK_NEXT_DAY"]),
        ({"closed_dates": "2026-12-31"}, ["custom/IVR_DND_CALLBACK_NEXT_DAY"]),
        ({}, []),  # offer, but no schedule: never outside hours
        ({"outside_hours": "continue", "hours": "mon 09:00-18:00"}, []),
    ],
)
def test_the_out_of_hours_prompts_are_checked_when_they_can_be_played(
    values: dict[str, str], extra: list[str]
) -> None:
    assert ivr(**values) == ivr() + extra


def test_every_text_setting_of_ivr_is_a_sound_or_known_not_to_be() -> None:
    # A new sound setting must be checked too: this fails until it is listed in check.py.
    not_sounds = {
        "accept_digit",
        "confirm_digit",
        "change_digit",
        "callerid_source",
        "on_prompt_failure",
        "outside_hours",
    }
    text_settings = {f.name for f in fields(IvrSettings) if f.type in ("str", str)}
    sounds = set(ALWAYS_PLAYED + READBACK_SOUNDS + ENTRY_SOUNDS + HIDDEN_NUMBER_SOUNDS)
    sounds |= set(CLOSED_SOUNDS + NEXT_DAY_SOUNDS)
    assert text_settings - not_sounds == sounds


def test_check_reports_every_prompt_and_the_crm(
    config: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    for sound in SHIPPED:
        assert f"ok      sound {sound}: en, ru\n" in result.stdout
    assert "ok      sound vm-goodbye" in result.stdout
    assert f"ok      {DIGITS_LINE}: en, ru\n" in result.stdout
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
    assert INSTALL_PROMPTS in result.stdout
    assert INSTALL_DIGITS not in result.stdout


def test_check_names_a_profiles_missing_prompt_and_its_profile(
    config: Path, fake: FakeAsterisk
) -> None:
    extra = "[profile:sales]\nqueues = 998\nprompt = custom/SALES_MENU\n"
    config.write_text(config.read_text() + extra)
    result = run_check(config)
    assert result.returncode == PROMPT_MISSING, result.stdout + result.stderr
    line = "MISSING sound custom/SALES_MENU (profile sales): missing on this Asterisk"
    assert line in result.stdout
    # The sounds every profile plays are listed once, without a profile.
    assert result.stdout.count("sound vm-goodbye: ") == 1


@pytest.mark.parametrize("fake_sounds", [PREVIOUS_SOUNDS])
def test_check_names_the_new_prompts_missing_on_an_old_install(config: Path) -> None:
    result = run_check(config)
    assert result.returncode == PROMPT_MISSING, result.stdout + result.stderr
    for sound in SHIPPED[2:]:
        assert f"MISSING sound {sound}: missing on this Asterisk" in result.stdout
    assert f"MISSING {DIGITS_LINE}: {', '.join(DIGITS)} missing" in result.stdout
    assert INSTALL_PROMPTS in result.stdout and INSTALL_DIGITS in result.stdout


@pytest.mark.parametrize("fake_sounds", [{k: v for k, v in EVERY_SOUND.items() if k != "digits/7"}])
def test_check_says_a_missing_digit_and_how_to_install_it(config: Path) -> None:
    result = run_check(config)
    assert result.returncode == PROMPT_MISSING, result.stdout + result.stderr
    assert f"MISSING {DIGITS_LINE}: digits/7 missing on this Asterisk\n" in result.stdout
    assert "asterisk-core-sounds-en asterisk-core-sounds-ru" in result.stdout
    assert INSTALL_PROMPTS not in result.stdout


@pytest.mark.parametrize(
    "fake_sounds", [{k: v for k, v in EVERY_SOUND.items() if k not in DIGITS + SHIPPED[3:5]}]
)
def test_check_without_readback_needs_no_digits_nor_readback_prompts(config: Path) -> None:
    config.write_text(config.read_text() + "[ivr]\nreadback = no\n")
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "digits/" not in result.stdout and "READBACK" not in result.stdout
    assert "ok      sound custom/IVR_DND_ENTER_NUMBER: en, ru" in result.stdout


@pytest.mark.parametrize("fake_languages", [("en",)])
def test_check_warns_of_digits_missing_in_a_language(config: Path) -> None:
    result = run_check(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"ok      {DIGITS_LINE}: not in ru (callers with that language hear the number in "
        "another language or not at all; Debian: apt-get install asterisk-core-sounds-ru)"
    ) in result.stdout


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
