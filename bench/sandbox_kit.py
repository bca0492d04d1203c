"""The sandbox Asterisk as the real-Asterisk benchmark drives it: an isolated
instance (its own cache and ports, so end-to-end tests elsewhere on the
machine are not disturbed) or one already running in the chosen cache (used
as it is, left running), a scripted phone that timestamps its key press,
and callers originated over ARI.

The phone is added at run time with `dialplan add extension` (context
`bench-phone`), so the project's and the sandbox's dialplan files stay as
they are. Each caller is a Local channel: half ;1 (the CALLER, id
`<call>`) runs the dialplan under test; half ;2 (the PHONE, id
`<call>-phone`) answers, waits, writes "<unix time> before <id>", sends the
digit 1 (held 100 ms), writes "<unix time> after <id>" and stays on the line.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import requests

from bench.common import REPO
from bench.processes import CRM_PASSWORD, CRM_USER

SANDBOX = REPO / "sandbox" / "asterisk"
# Isolated from the default sandbox (tests/e2e) and from developers' own copies.
BENCH_ENV = {
    "STASIS_DND_SANDBOX_CACHE": "/var/cache/stasis-dnd-bench",
    "STASIS_DND_SANDBOX_ARI_PORT": "18288",
    "STASIS_DND_SANDBOX_SIP_PORT": "15260",
}
PHONE_CONTEXT = "bench-phone"
PHONE_LOG = "/var/log/asterisk/bench-phone.log"  # inside the chroot
ORIGINAL_LOG = "/var/log/asterisk/dnd-original.log"  # bench/original/dndoperator.php's
KEY_HOLD_MS = 100
STATE_FILE = "run/stasis-dnd-sandbox.json"  # sandbox/asterisk's: pid and ports


class SandboxFailed(RuntimeError):
    """sandbox/asterisk failed; the message is its own last lines."""


def sandbox_env(crm_url: str = "") -> dict[str, str]:
    """The environment for sandbox/asterisk: the bench's isolation unless overridden."""
    env = {**os.environ}
    for key, value in BENCH_ENV.items():
        env.setdefault(key, value)
    if crm_url:
        env["STASIS_DND_SANDBOX_CRM_URL"] = crm_url
    return env


@dataclass
class Sandbox:
    env: dict[str, str]
    reused: bool = False  # it was running already: used as it is, not stopped

    def attach(self) -> bool:
        """Use an Asterisk already running in this sandbox's root (its ports from
        its state file) instead of starting one; False if none runs."""
        try:
            state = json.loads((self.root / STATE_FILE).read_text())
            pid = int(state["pid"])
            running = os.readlink(f"/proc/{pid}/root") == str(self.root.resolve())
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not running:
            return False
        self.env = {
            **self.env,
            "STASIS_DND_SANDBOX_ARI_PORT": str(state["ari_port"]),
            "STASIS_DND_SANDBOX_SIP_PORT": str(state["sip_port"]),
        }
        self.reused = True
        return True

    def run(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [str(SANDBOX), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise SandboxFailed((result.stdout + result.stderr).strip()[-2000:])
        return result.stdout

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop", timeout=120)

    @cached_property
    def root(self) -> Path:
        return Path(self.run("path", timeout=60).strip())

    @property
    def pid(self) -> int:
        """Asterisk's pid (the chroot command execs it, so it is the same process)."""
        state = json.loads((self.root / STATE_FILE).read_text())
        return int(state["pid"])

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.env['STASIS_DND_SANDBOX_ARI_PORT']}"

    @property
    def ari_auth(self) -> tuple[str, str]:
        return (
            self.env.get("STASIS_DND_SANDBOX_ARI_USER", "stasis-dnd"),
            self.env.get("STASIS_DND_SANDBOX_ARI_PASSWORD", "stasis-dnd-sandbox"),
        )

    def rx(self, command: str) -> str:
        result = subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/asterisk", "-rx", command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return result.stdout

    def version(self) -> str:
        return self.rx("core show version").split(" built by")[0].strip()

    def outside(self, inside: str) -> Path:
        """A path inside the chroot as seen from here."""
        return self.root / inside.lstrip("/")

    def add_phone(self) -> None:
        """The scripted phone `keyafterN@bench-phone`: presses 1 after N s.

        (A pattern name without N, X or Z: those are digit classes.)"""
        stamp = f"Set(FILE({PHONE_LOG},,,al,u)=${{STRFTIME(,,%s.%6q)}} WHAT ${{UNIQUEID}})"
        steps = [
            "Answer()",
            "Wait(${EXTEN:8})",
            stamp.replace("WHAT", "before"),
            f"SendDTMF(1,1,{KEY_HOLD_MS})",
            stamp.replace("WHAT", "after"),
            "Wait(30)",
            "Hangup()",
        ]
        for priority, step in enumerate(steps, start=1):
            extension = f"_keyafter.,{priority},{step}"
            answer = self.rx(f'dialplan add extension "{extension}" into {PHONE_CONTEXT} replace')
            if "added" not in answer and "replace" not in answer:
                raise SandboxFailed(f"cannot add the bench phone: {answer.strip()}")


@dataclass(frozen=True)
class PhoneStamps:
    before: float
    after: float


def read_phone_log(path: Path) -> dict[str, PhoneStamps]:
    """CALLER id -> its phone's timestamps around SendDTMF."""
    seen: dict[str, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].endswith("-phone"):
                seen.setdefault(parts[2].removesuffix("-phone"), {})[parts[1]] = float(parts[0])
    return {
        caller: PhoneStamps(s["before"], s["after"])
        for caller, s in seen.items()
        if "before" in s and "after" in s
    }


def read_original_log(path: Path) -> dict[str, dict[str, float]]:
    """CALLER id -> {"request": time, "answer": time} from dndoperator.php's log."""
    found: dict[str, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                found.setdefault(parts[2], {})[parts[1]] = float(parts[0])
    return found


class Ari:
    """The few ARI requests the benchmark makes, over one keep-alive session."""

    def __init__(self, sandbox: Sandbox, crm_url: str) -> None:
        self.base = sandbox.ari_url + "/ari"
        self.session = requests.Session()
        self.session.auth = sandbox.ari_auth
        # Per call, over the dialplan's globals: a sandbox started by someone
        # else points its dialplan at their CRM.
        self.crm_variables = {
            "ORIGINAL_CRM_URL": crm_url,
            "ORIGINAL_CRM_USER": CRM_USER,
            "ORIGINAL_CRM_PASSWORD": CRM_PASSWORD,
            "DND_CRM_URL": crm_url,
            "DND_CRM_USER": CRM_USER,
            "DND_CRM_PASSWORD": CRM_PASSWORD,
        }

    def originate(
        self, call_id: str, number: str, context: str, variables: dict[str, str], press_after: float
    ) -> None:
        answer = self.session.post(
            f"{self.base}/channels",
            params={
                "endpoint": f"Local/keyafter{press_after:g}@{PHONE_CONTEXT}",
                "context": context,
                "extension": "s",
                "priority": "1",
                "callerId": f'"Bench" <{number}>',
                "channelId": call_id,
                "otherChannelId": f"{call_id}-phone",
                # As a phone would negotiate; otherwise prompts are resampled
                # up to 192 kHz and a call costs about 3x the CPU.
                "formats": "ulaw",
            },
            json={"variables": {**self.crm_variables, **variables}},
            timeout=10,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"originate {call_id}: {answer.status_code} {answer.text[:200]}")

    def channel_ids(self) -> set[str]:
        """Ids of every channel; RuntimeError if an overloaded Asterisk cannot say."""
        try:
            answer = self.session.get(f"{self.base}/channels", timeout=30)
            answer.raise_for_status()
        except requests.RequestException as error:
            raise RuntimeError(f"GET /channels failed: {error}") from None
        return {str(c["id"]) for c in answer.json()}
