"""Shared pieces of the hostile-world tests: `stasis-dnd run` as a process
(as in tests/integration/harness.py, plus environment variables), config
files with any keys and short IVR timers, the media a caller hears,
read-only looks at the outbox."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import FakeAsterisk

ARI_USER = "stasis-dnd"
ARI_PASSWORD = "ari-Secret-4711"
CRM_USER = "robot"
CRM_PASSWORD = "crm-Secret-0815"
APP = "stasis-dnd"
PROMPT = "sound:custom/IVR_DND_OPERATORS"
SORRY = "sound:sorry-youre-having-problems"
GOODBYE = "sound:vm-goodbye"
CONFIRMED = "sound:custom/IVR_DND_CALLBACK_CONFIRMED"
# After the key, a caller without a usable number is asked to key one in.
NO_NUMBER_ENTRY = "sound:custom/IVR_DND_NO_NUMBER,sound:custom/IVR_DND_ENTER_NUMBER"
ENTER_NUMBER = "sound:custom/IVR_DND_ENTER_NUMBER"
# Prompts a few tenths of a second long: a silent caller is done in ~1.5 s.
SHORT_SOUNDS = {
    "custom/IVR_DND_OPERATORS": 0.6,
    "custom/IVR_DND_CALLBACK_CONFIRMED": 0.2,
    "custom/IVR_DND_ALREADY_REQUESTED": 0.2,
    "custom/IVR_DND_READBACK": 0.2,
    "custom/IVR_DND_READBACK_MENU": 0.2,
    "custom/IVR_DND_NO_NUMBER": 0.2,
    "custom/IVR_DND_ENTER_NUMBER": 0.2,
    "custom/IVR_DND_NUMBER_INVALID": 0.2,
    **{f"digits/{digit}": 0.05 for digit in range(10)},
    "sorry-youre-having-problems": 0.2,
    "vm-goodbye": 0.2,
}
REQUEST_ID = re.compile(r"request_id=([0-9a-f-]{36})")

Sections = Mapping[str, Mapping[str, object]]


def readback(number: str) -> str:
    """The one playback that reads `number` back and offers to confirm it."""
    digits = "".join(f"sound:digits/{digit}," for digit in number.removeprefix("+"))
    return f"sound:custom/IVR_DND_READBACK,{digits}sound:custom/IVR_DND_READBACK_MENU"


def requested(number: str) -> list[str]:
    """What a caller hears who pressed 1 and let the read-back confirm `number`."""
    return [PROMPT, readback(number), CONFIRMED, GOODBYE]


def write_config(
    folder: Path,
    fake: FakeAsterisk | None,
    crm: CrmEmulator | None,
    overrides: Sections | None = None,
    *,
    name: str = "stasis-dnd.ini",
) -> Path:
    """A config for the fakes (0600), short IVR timers; `overrides` win per key."""
    sections: dict[str, dict[str, object]] = {
        "ari": {
            "url": fake.url if fake else "http://127.0.0.1:9",
            "username": ARI_USER,
            "password": ARI_PASSWORD,
            "app": APP,
            "drain_timeout": "3s",
        },
        # Silence after the read-back confirms it, so this also is the wait for that.
        "ivr": {"digit_timeout": 0.5, "entry_digit_timeout": "0.5s"},
        "crm": {
            "url": crm.url if crm else "http://127.0.0.1:9",
            "username": CRM_USER,
            "password": CRM_PASSWORD,
            "timeout": 1,
        },
        "outbox": {"path": folder / "outbox.sqlite3"},
    }
    for section, keys in (overrides or {}).items():
        sections.setdefault(section, {}).update(keys)
    text = "".join(
        f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)
        for section, keys in sections.items()
    )
    config = folder / name
    config.write_text(text)
    config.chmod(0o600)
    return config


class App:
    """One `stasis-dnd run`; its output goes to `<label>.log` beside the config."""

    def __init__(
        self,
        config: Path,
        *,
        label: str = "app",
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.log = config.parent / f"{label}.log"
        self.log_level = log_level
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> App:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "stasis_dnd", "run", "--config", str(self.config)),
                    *("--log-level", self.log_level),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    def wait_log(self, needle: str, timeout: float = 20.0, count: int = 1) -> None:
        wait(
            lambda: self.count(needle) >= count,
            timeout,
            lambda: f"{needle!r} x{count} in the app log:\n{self.text()}",
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def exit_status(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def request_ids(self) -> list[str]:
        """Request ids of the callbacks this app's log says it stored."""
        return [
            m.group(1)
            for line in self.lines()
            if "event=callback_stored" in line
            for m in [REQUEST_ID.search(line)]
            if m
        ]

    def warnings(self) -> list[str]:
        """Log lines at WARNING or worse."""
        levels = ("level=WARNING", "level=ERROR", "level=CRITICAL")
        return [line for line in self.lines() if line.startswith(levels)]


def wait(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    """Poll `condition` until true; fail with `what()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what()}")
        time.sleep(0.02)


def outbox_rows(path: Path) -> list[dict[str, object]]:
    """Every row of the outbox file, read without writing to it."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM requests ORDER BY id")]
    finally:
        db.close()


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`stasis-dnd ARGS` to completion; `env` is added to (or, with "", removes from)
    this process's environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STASIS_DND_")}
    environment.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-m", "stasis_dnd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
