"""`stasis-dnd run` as a subprocess against the fake Asterisk and the CRM
emulator, both on loopback in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import FakeAsterisk

ARI_USER = "stasis-dnd"
ARI_PASSWORD = "ari-Secret-4711"
CRM_USER = "robot"
CRM_PASSWORD = "crm-Secret-0815"
APP = "stasis-dnd"


def write_config(folder: Path, fake: FakeAsterisk, crm: CrmEmulator, extra: str = "") -> Path:
    config = folder / "stasis-dnd.ini"
    config.write_text(
        f"[ari]\nurl = {fake.url}\nusername = {ARI_USER}\npassword = {ARI_PASSWORD}\n"
        f"app = {APP}\ndrain_timeout = 3s\n"
        f"[crm]\nurl = {crm.url}\nusername = {CRM_USER}\npassword = {CRM_PASSWORD}\n"
        f"[outbox]\npath = {folder / 'outbox.sqlite3'}\n" + extra
    )
    config.chmod(0o600)
    return config


class AppProcess:
    """One `stasis-dnd run`; its output goes to a log file the test can read."""

    def __init__(self, config: Path, *, log_level: str = "info") -> None:
        self.config = config
        self.log = config.parent / "app.log"
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def start(self) -> AppProcess:
        self.offset = len(self.text()) if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stasis_dnd",
                    "run",
                    "--config",
                    str(self.config),
                    "--log-level",
                    self.log_level,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait_log(self, needle: str, timeout: float = 20.0, count: int = 1) -> None:
        def found() -> bool:
            return self.text().count(needle) >= count

        wait(found, timeout, lambda: f"{needle!r} x{count} in the app log:\n{self.text()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def wait(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what()}")
        time.sleep(0.02)
