"""Benchmark 3: the app vs the original dialplan + PHP AGI, on one real
Asterisk 22 (the sandbox), same callers, same run.

    sudo .venv/bin/python -m bench.real_asterisk [--quick] [--rates 5,10,20,40] [--seconds 30]

Needs root (the sandbox is a chroot). It uses the Asterisk already running
in the sandbox's cache if there is one (and leaves it running), else starts an
ISOLATED sandbox (its own cache /var/cache/stasis-dnd-bench and ports
18288/15260; override with the STASIS_DND_SANDBOX_* variables,
sandbox/README.md); then a CRM emulator in a process of its own, and
`stasis-dnd run`. Then, for each rate, callers are
originated for `--seconds` into (a) `dnd-queue` (extensions.conf.sample: the
queue, then Stasis -> the app) and (b) `original-queue`
(bench/original: the queue, then Background/WaitExten, "1" runs
dndoperator.php). Every caller is a Local channel (formats=ulaw) whose phone
half presses 1 (held 100 ms) `--press-after` s after answering, i.e. about
2 s into the menu prompt after a 1 s queue wait. Each caller has its own
number. A phase ends when every call has ended, every request has reached
the CRM, no channel is left on Asterisk and the CPU of Asterisk and of the
app is back to idle: the next phase never starts during this one's drain.

What is measured, per call:
- DTMF -> CRM request: from the phone's timestamp written right after
  SendDTMF returned (the key-up frame went to the caller's channel at most
  ~1 ms before; Asterisk's own clock, microseconds) to the CRM emulator
  reading the request (time.time() in its own process). One machine, one clock.
- CPU per call: the phase's CPU time / calls placed, from /proc/<pid>/stat:
  Asterisk's own (utime + stime, all threads) plus, for the original, its
  reaped children (cutime + cstime: the PHP processes), or plus the app
  process (utime + stime) for the app. The phase runs from the first
  originate until Asterisk is idle again; Asterisk's and the app's idle CPU
  (measured before the first phase, printed apart) over that time is
  subtracted.
- correct: the CRM got exactly one request with the caller's number and
  accepted it, the call ended, and (app) the app logged outcome=callback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.common import CpuTimes, cpu_times, git_revision, machine, ms
from bench.drain import idle_cpu, wait_idle
from bench.processes import AppConfig, Child, CrmLine, read_crm_log, start_app, start_crm, wait_for
from bench.real_report import report, targets
from bench.sandbox_kit import (
    ORIGINAL_LOG,
    PHONE_LOG,
    Ari,
    Sandbox,
    SandboxFailed,
    read_original_log,
    read_phone_log,
    sandbox_env,
)

# Each run its own app name: an app left running by an earlier run cannot take its calls.
APP_PREFIX = "stasis-dnd-bench"
SETUPS = {"app": "dnd-queue", "original": "original-queue"}
# SendDTMF: 100 ms of quiet before the digit, then the digit held 100 ms.
SEND_DTMF_NOMINAL = 0.2


@dataclass
class Phase:
    setup: str
    rate: float
    calls: list[tuple[str, str]] = field(default_factory=list)  # (call id, number)
    seconds: float = 0.0  # first originate to the last call ended
    placing: float = 0.0  # first to last originate (longer than planned: Asterisk lagged)
    asterisk: CpuTimes = field(default_factory=lambda: CpuTimes(0.0, 0.0))
    app: float = 0.0
    latencies: list[float] = field(default_factory=list)
    overshoot: list[float] = field(default_factory=list)  # SendDTMF took longer than nominal
    agi_start: list[float] = field(default_factory=list)  # key-up -> PHP about to send
    correct: int = 0
    problems: list[str] = field(default_factory=list)
    # CPU seconds per second Asterisk and the app use when idle, subtracted.
    idle_asterisk: float = 0.0
    idle_app: float = 0.0

    def per_call(self, seconds: float) -> float:
        return ms(seconds / max(1, len(self.calls)))

    @property
    def asterisk_ms(self) -> float:
        """Asterisk's own CPU per call, idle subtracted."""
        return self.per_call(max(0.0, self.asterisk.own - self.idle_asterisk * self.seconds))

    @property
    def helper_ms(self) -> float:
        """CPU per call of what works beside Asterisk: the app (idle subtracted),
        or the AGI processes (Asterisk's reaped children)."""
        if self.setup == "app":
            return self.per_call(max(0.0, self.app - self.idle_app * self.seconds))
        return self.per_call(self.asterisk.children)

    @property
    def total_ms(self) -> float:
        return self.asterisk_ms + self.helper_ms

    @property
    def gross_ms(self) -> float:
        """Everything per call, idle included."""
        helper = self.app if self.setup == "app" else self.asterisk.children
        return self.per_call(self.asterisk.own + helper)


class Bench:
    def __init__(self, sandbox: Sandbox, ari: Ari, app: Child, crm_log: Path, press_after: float,
                 *, app_name: str):  # fmt: skip
        self.sandbox, self.ari, self.app, self.crm_log = sandbox, ari, app, crm_log
        self.press_after, self.app_name = press_after, app_name
        self.idle_asterisk = self.idle_app = 0.0
        self.run_id = app_name.rsplit("-", 1)[-1]
        self.numbers = iter(range(1, 10**7))

    def phase(self, setup: str, rate: float, seconds: float) -> Phase:
        phase = Phase(setup, rate, idle_asterisk=self.idle_asterisk, idle_app=self.idle_app)
        count = max(1, round(rate * seconds))
        variables = {"DND_QUEUE_TIMEOUT": "1"}
        if setup == "app":
            variables["DND_APP"] = self.app_name
        prefix = f"bench-{self.run_id}-{setup}-{rate:g}"
        ast0, app0 = cpu_times(self.sandbox.pid), cpu_times(self.app.pid)
        started = time.monotonic()
        failed: set[str] = set()
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            call_id, number = f"{prefix}-{i}", f"+7901{next(self.numbers):07d}"
            phase.calls.append((call_id, number))
            try:
                self.ari.originate(call_id, number, SETUPS[setup], variables, self.press_after)
            except (OSError, RuntimeError, requests.RequestException) as error:
                # An Asterisk overloaded by this setup: the call counts, as not correct.
                phase.problems.append(f"{call_id}: not placed ({error})"[:300])
                failed.add(call_id)
        phase.placing = time.monotonic() - started
        ours = {c for c, _ in phase.calls} - failed
        numbers = {n for c, n in phase.calls if c in ours}

        def done() -> bool:
            in_crm = {x.phone for x in read_crm_log(self.crm_log)}
            try:
                alive = {c.removesuffix("-phone") for c in self.ari.channel_ids()}
            except RuntimeError:
                return False  # Asterisk too busy to answer: not done
            return numbers <= in_crm and not (alive & ours)

        try:
            wait_for(done, 60 + self.press_after + 2 * seconds,
                     f"the {setup} calls at {rate:g}/s to end")  # fmt: skip
        except RuntimeError as error:
            phase.problems.append(str(error))
        busy = self.wait_idle()
        if busy:
            phase.problems.append(busy)
        phase.seconds = time.monotonic() - started
        phase.asterisk = cpu_times(self.sandbox.pid) - ast0
        phase.app = (cpu_times(self.app.pid) - app0).own
        self._score(phase)
        return phase

    def wait_idle(self, timeout: float = 180.0) -> str:
        """Until no channel is left and Asterisk and the app are back to idle CPU."""
        return wait_idle(self.ari.channel_ids, [self.sandbox.pid, self.app.pid],
                         [self.idle_asterisk, self.idle_app], timeout)  # fmt: skip

    def _score(self, phase: Phase) -> None:
        stamps = read_phone_log(self.sandbox.outside(PHONE_LOG))
        agi = read_original_log(self.sandbox.outside(ORIGINAL_LOG))
        by_number: dict[str, list[CrmLine]] = defaultdict(list)
        for line in read_crm_log(self.crm_log):
            by_number[line.phone].append(line)
        app_log = self.app.text()
        try:
            alive = {c.removesuffix("-phone") for c in self.ari.channel_ids()}
        except RuntimeError as error:
            phase.problems.append(str(error))
            alive = {c for c, _ in phase.calls}
        for call_id, number in phase.calls:
            got, stamp = by_number.get(number, []), stamps.get(call_id)
            if stamp is None:
                phase.problems.append(f"{call_id}: the phone never pressed")
                continue
            phase.overshoot.append(stamp.after - stamp.before - SEND_DTMF_NOMINAL)
            if not got:
                phase.problems.append(f"{call_id}: no CRM request")
                continue
            phase.latencies.append(got[0].at - stamp.after)
            if call_id in agi and "request" in agi[call_id]:
                phase.agi_start.append(agi[call_id]["request"] - stamp.after)
            accepted = len(got) == 1 and got[0].answer in ("ok", "html")
            logged = phase.setup != "app" or bool(
                re.search(rf"event=call channel={re.escape(call_id)} \S+ outcome=callback", app_log)
            )
            if accepted and logged and call_id not in alive:
                phase.correct += 1
            else:
                phase.problems.append(
                    f"{call_id}: {len(got)} CRM request(s) answered "
                    f"{[x.answer for x in got]}, app logged callback: {logged}, "
                    f"ended: {call_id not in alive}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_asterisk",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument(
        "--rates", default="5,10,20,40", help="calls per second (default 5,10,20,40)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of calls per phase")
    parser.add_argument("--setups", default="app,original", help="app,original or one of them")
    parser.add_argument("--press-after", type=float, default=3.0, help="phone presses 1 after N s")
    parser.add_argument("--quick", action="store_true", help="6 s per phase")
    parser.add_argument("--keep-sandbox", action="store_true", help="leave Asterisk running")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if any call (either setup) was not correct")  # fmt: skip
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.real_asterisk: needs root (the sandbox Asterisk runs in a chroot)")
        return 1
    seconds = 6.0 if args.quick else args.seconds
    try:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        parser.error("--rates must be numbers, e.g. 5,10,20")
    setups = [x.strip() for x in args.setups.split(",") if x.strip()]
    if not rates or any(r <= 0 for r in rates) or not set(setups) <= SETUPS.keys() or not setups:
        parser.error("--rates must be positive numbers, --setups a list of app, original")
    with tempfile.TemporaryDirectory(prefix="stasis-dnd-bench-") as tmp:
        plan = Plan(rates, setups, seconds, args.press_after, args.keep_sandbox,
                    idle_seconds=4.0 if args.quick else 10.0, check=args.check)  # fmt: skip
        return run(Path(tmp), plan)


@dataclass(frozen=True)
class Plan:
    rates: list[float]
    setups: list[str]
    seconds: float
    press_after: float
    keep_sandbox: bool
    idle_seconds: float = 10.0
    check: bool = False


def run(folder: Path, plan: Plan) -> int:
    crm, crm_url, crm_log = start_crm(folder)
    sandbox = Sandbox(sandbox_env(crm_url + "/admin/dynamic.do"))
    app: Child | None = None
    try:
        if sandbox.attach():
            print(f"using the sandbox Asterisk running at {sandbox.ari_url}", flush=True)
        else:
            print("starting the sandbox Asterisk (the first time builds it: 1-2 minutes)...",
                  flush=True)  # fmt: skip
            sandbox.start()
        sandbox.add_phone()
        sandbox.outside(PHONE_LOG).unlink(missing_ok=True)
        user, password = sandbox.ari_auth
        app_name = f"{APP_PREFIX}-{uuid.uuid4().hex[:6]}"
        app = start_app(AppConfig(sandbox.ari_url, user, password, app_name, crm_url, folder))
        ari = Ari(sandbox, crm_url + "/admin/dynamic.do")
        wait_for(lambda: not ari.channel_ids(), 60, "the sandbox's channels to end")
        bench = Bench(sandbox, ari, app, crm_log, plan.press_after, app_name=app_name)
        about = f"{machine(sandbox.version())}; stasis-dnd {git_revision()}"
        print(f"# Real Asterisk: the app vs the original dialplan + PHP AGI\n\n{about}\n",
              flush=True)  # fmt: skip
        bench.idle_asterisk, bench.idle_app = idle_cpu([sandbox.pid, app.pid], plan.idle_seconds)
        idle = f"Asterisk {ms(bench.idle_asterisk):.2f} ms/s, app {ms(bench.idle_app):.2f} ms/s"
        print(f"idle CPU (over {plan.idle_seconds:g} s): {idle}\n", flush=True)
        phases = []
        for rate in plan.rates:
            for setup in plan.setups:
                print(f"... {rate:g} calls/s through the {setup} for {plan.seconds:g} s",
                      flush=True)  # fmt: skip
                phases.append(bench.phase(setup, rate, plan.seconds))
        print()
        print(report(phases))
        print("\nTargets (issue 6, then those of halving the app's own CPU):")
        print(targets(phases))
        wrong = sum(len(p.calls) - p.correct for p in phases)
        if plan.check and wrong:
            print(f"bench.real_asterisk: {wrong} call(s) not correct", file=sys.stderr)
            return 1
        return 0
    except SandboxFailed as error:
        print(f"bench.real_asterisk: the sandbox failed: {error}", file=sys.stderr)
        return 1
    finally:
        if app is not None:
            app.stop()
        crm.stop()
        if not (plan.keep_sandbox or sandbox.reused):
            try:
                sandbox.stop()
            except SandboxFailed as error:
                print(f"bench.real_asterisk: stopping the sandbox failed: {error}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
