"""Processes the benchmarks start: `stasis-dnd run`, the fake Asterisk, and a
CRM emulator in a process of its own that writes one line per request.

Each runs as a child of the benchmark, so its CPU time and memory can be read
from /proc without counting the benchmark's own work.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO

CRM_USER = "sandbox-user"
CRM_PASSWORD = "sandbox-password"  # the sandbox's, also used by the original


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; RuntimeError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _python_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{REPO}:{path}".rstrip(":")}


class Child:
    """A child process whose output goes to a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=_python_env(), cwd=REPO
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log.name}: the process exited:\n{self.text()[-2000:]}")
            return needle in self.text()

        wait_for(seen, timeout, f"{needle!r} in {self.log}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(10)


@dataclass(frozen=True)
class AppConfig:
    ari_url: str
    ari_user: str
    ari_password: str
    app: str
    crm_url: str
    folder: Path
    metrics_port: int = 0

    def write(self) -> Path:
        metrics = ""
        if self.metrics_port:
            metrics = f"[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n"
        path = self.folder / "stasis-dnd.ini"
        path.write_text(
            f"[ari]\nurl = {self.ari_url}\nusername = {self.ari_user}\n"
            f"password = {self.ari_password}\napp = {self.app}\ndrain_timeout = 2s\n"
            # The original's steps, so both setups do the same work per call.
            "[ivr]\nreadback = no\nconfirmation =\n"
            f"[crm]\nurl = {self.crm_url}\nusername = {CRM_USER}\npassword = {CRM_PASSWORD}\n"
            f"[outbox]\npath = {self.folder / 'outbox.sqlite3'}\n{metrics}"
        )
        path.chmod(0o600)
        return path


def start_app(config: AppConfig) -> Child:
    """`stasis-dnd run` with this configuration; returns once it is connected.

    $STASIS_DND_BENCH_APP_CMD replaces `python -m stasis_dnd` (to profile the
    app, e.g. "py-spy record --gil -o prof.svg -- .venv/bin/python -m stasis_dnd");
    $STASIS_DND_BENCH_APP_ARGS adds options to `run` (e.g. "--workers 4").
    """
    command = shlex.split(os.environ.get("STASIS_DND_BENCH_APP_CMD", "")) or [
        sys.executable, "-m", "stasis_dnd",
    ]  # fmt: skip
    extra = shlex.split(os.environ.get("STASIS_DND_BENCH_APP_ARGS", ""))
    child = Child(
        [*command, "run", "--config", str(config.write()), *extra], config.folder / "app.log"
    )
    child.wait_log("event=ari_connected", timeout=30)
    return child


def start_fake(
    folder: Path, user: str, password: str, app: str, sounds: dict[str, float]
) -> tuple[Child, str]:
    """The fake Asterisk as its own process; returns it and its base URL."""
    args = [sys.executable, "-m", "stasis_dnd.testing.fake_asterisk", "--port", "0",
            "--username", user, "--password", password, "--app", app]  # fmt: skip
    for name, seconds in sounds.items():
        args += ["--sound", f"{name}={seconds}"]
    child = Child(args, folder / "fake-asterisk.log")
    child.wait_log("listening on", timeout=30)
    line = next(x for x in child.text().splitlines() if "listening on" in x)
    url = line.split("listening on", 1)[1].split()[0]
    return child, url


def start_crm(folder: Path) -> tuple[Child, str, Path]:
    """The CRM emulator in its own process; returns it, its URL and its request log.

    Each request is a line "<unix time>\\t<method>\\t<aon>\\t<answer>", the time
    taken (time.time()) as soon as the request has been read.
    """
    port = free_port()
    requests_log = folder / "crm-requests.tsv"
    child = Child(
        [sys.executable, "-m", "bench.crm_recorder", "--port", str(port),
         "--username", CRM_USER, "--password", CRM_PASSWORD, "--out", str(requests_log)],
        folder / "crm.log",
    )  # fmt: skip
    child.wait_log("listening", timeout=30)
    return child, f"http://127.0.0.1:{port}", requests_log


@dataclass(frozen=True)
class CrmLine:
    at: float
    method: str
    phone: str
    answer: str


def read_crm_log(path: Path) -> list[CrmLine]:
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        parts = raw.split("\t")
        if len(parts) == 4:
            lines.append(CrmLine(float(parts[0]), parts[1], parts[2], parts[3]))
    return lines
