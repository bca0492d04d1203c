"""Benchmark 2: one `stasis-dnd run` process under 100, 500 and 1,000
concurrent calls from the fake Asterisk.

    .venv/bin/python -m bench.fake_load [--quick] [--levels 10,100,500,1000]

For each level a fresh app, fake Asterisk (its own process) and CRM emulator
are started. Callers arrive evenly over `--ramp` seconds (10) and each stays
`--hold` seconds (15) into a `--prompt` (20 s) menu prompt before acting, so all of them are
in the app at once for about 5 s. The mix, by caller number: 7 in 10 press 1
(a callback request is stored, goodbye, hang-up), 1 presses 7 (sorry,
goodbye), 1 stays silent through the prompt and the 3 s digit timeout, 1
hangs up during the prompt. Each caller has its own number, so the app's
duplicate check finds nothing to suppress.

Figures per level:
- event -> command latency, as the fake sees it: from the fake queueing an
  event the app must act on (StasisStart, ChannelDtmfReceived,
  PlaybackFinished) to the fake receiving the app's next REST request for
  that channel. It includes the fake's own delays (it is Python too, on the
  same 2 cores): the fake's CPU is printed beside it.
- the same inside the app (its Prometheus histogram, arrival of the event on
  the socket to the REST command; bucket bounds, so "<= 5 ms").
- app CPU ms per call: utime + stime of the app process from the first call
  to the last CRM request, divided by the calls (idle pings included).
- RSS per call: (peak RSS during the level - RSS before it) / calls.
- errors: calls that ended other than their script says, CRM requests
  missing or doubled, REST requests the fake answered with an error, app log
  lines at WARNING or above.

The baseline, measured in the same run, is the first level (10 calls).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import cpu_times, machine, ms, percentile, rss_kib, table
from bench.processes import (
    AppConfig,
    Child,
    free_port,
    read_crm_log,
    start_app,
    start_crm,
    start_fake,
    wait_for,
)

DESCRIPTION = "One stasis-dnd run process under many concurrent calls from the fake Asterisk."
ARI_USER = "bench"
ARI_PASSWORD = "bench-ari-secret"
APP = "stasis-dnd-bench"
PROMPT = "custom/IVR_DND_OPERATORS"
# The other sounds as long as the real ones; the menu prompt is long (--prompt,
# 20 s) so that callers who press late still press during it.
OTHER_SOUNDS = {
    "custom/IVR_DND_CALLBACK_CONFIRMED": 4.75,
    "sorry-youre-having-problems": 2.0,
    "vm-goodbye": 0.88,
}
# What caller i does: KINDS[i % 10].
KINDS = ("press1",) * 7 + ("press7", "silent", "hangup")
DIGIT_TIMEOUT = 3.0  # [ivr] digit_timeout, the app's default
EXPECTED = {"press1": "hungup_by_app", "press7": "hungup_by_app", "silent": "hungup_by_app",
            "hangup": "caller_hung_up"}  # fmt: skip


def script(kind: str, hold: float) -> list[list[Any]]:
    if kind == "press1":
        return [["wait_playback_start"], ["sleep", hold], ["dtmf", "1"]]
    if kind == "press7":
        return [["wait_playback_start"], ["sleep", hold], ["dtmf", "7"]]
    if kind == "hangup":
        return [["wait_playback_start"], ["sleep", hold], ["hangup"]]
    return []


def number(i: int) -> str:
    return f"+7900{i:07d}"


@dataclass
class Level:
    calls: int
    placed: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kind, number)
    ramp_seconds: float = 0.0
    peak_in_app: int = 0
    latencies: list[dict[str, Any]] = field(default_factory=list)
    app_buckets: list[tuple[float, float]] = field(default_factory=list)
    app_cpu: float = 0.0
    fake_cpu: float = 0.0
    wall: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    wrong_endings: int = 0
    crm_missing: int = 0
    crm_extra: int = 0
    rest_errors: int = 0
    log_problems: list[str] = field(default_factory=list)


class Sampler(threading.Thread):
    """Samples the app's RSS and the calls in the app until stopped."""

    def __init__(self, pid: int, stats_url: str) -> None:
        super().__init__(daemon=True)
        self.pid, self.stats_url = pid, stats_url
        self.peak_rss = 0
        self.peak_in_app = 0
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, rss_kib(self.pid))
            counters = session.get(self.stats_url, timeout=30).json()["counters"]
            self.peak_in_app = max(self.peak_in_app, int(counters.get("in_app", 0)))


@dataclass(frozen=True)
class Load:
    ramp: float  # seconds over which the callers arrive
    hold: float  # seconds into the prompt each caller acts
    prompt: float  # seconds the menu prompt lasts


def run_level(calls: int, load: Load, folder: Path) -> Level:
    level = Level(calls)
    sounds = {PROMPT: load.prompt, **OTHER_SOUNDS}
    fake, fake_url = start_fake(folder, ARI_USER, ARI_PASSWORD, APP, sounds)
    crm, crm_url, crm_log = start_crm(folder)
    app: Child | None = None
    try:
        metrics_port = free_port()
        app = start_app(AppConfig(fake_url, ARI_USER, ARI_PASSWORD, APP, crm_url, folder,
                                  metrics_port))  # fmt: skip
        session = requests.Session()
        stats_url = f"{fake_url}/_fake/stats"
        time.sleep(1.0)  # let start-up work (imports, recovery) settle before measuring
        level.rss_before = rss_kib(app.pid)
        cpu_app, cpu_fake = cpu_times(app.pid), cpu_times(fake.pid)
        sampler = Sampler(app.pid, stats_url)
        sampler.start()
        started = time.monotonic()
        _place_calls(level, session, fake_url, load.ramp, load.hold)
        level.ramp_seconds = time.monotonic() - started
        press1 = {n for _, kind, n in level.placed if kind == "press1"}

        def finished() -> bool:
            counters = session.get(stats_url, timeout=30).json()["counters"]
            delivered = {x.phone for x in read_crm_log(crm_log) if x.answer == "ok"}
            return counters.get("in_app", 1) == 0 and delivered >= press1

        timeout = load.prompt + 60 + calls / 20
        wait_for(finished, timeout, "every call to end and every request to arrive")
        level.wall = time.monotonic() - started
        level.app_cpu = (cpu_times(app.pid) - cpu_app).own
        level.fake_cpu = (cpu_times(fake.pid) - cpu_fake).own
        sampler.stop.set()
        sampler.join()
        level.rss_peak, level.peak_in_app = sampler.peak_rss, sampler.peak_in_app
        metrics = session.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
        level.app_buckets = _histogram(metrics)
        _check_calls(level, session, fake_url, crm_log, press1)
    finally:
        if app is not None:
            app.stop()
            level.log_problems = [
                line for line in app.text().splitlines()
                if re.search(r"level=(WARNING|ERROR|CRITICAL)", line) or "Traceback" in line
            ]  # fmt: skip
        crm.stop()
        fake.stop()
    return level


def _place_calls(
    level: Level, session: requests.Session, fake_url: str, ramp: float, hold: float
) -> None:
    """One caller every ramp / calls seconds, each with its own number and script."""
    started = time.monotonic()
    interval = ramp / level.calls
    for i in range(level.calls):
        delay = started + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        kind = KINDS[i % len(KINDS)]
        spec = {"number": number(i), "script": script(kind, hold)}
        answer = session.post(f"{fake_url}/_fake/calls", json=spec, timeout=30)
        answer.raise_for_status()
        level.placed.append((answer.json()["ids"][0], kind, number(i)))


def _check_calls(
    level: Level, session: requests.Session, fake_url: str, crm_log: Path, press1: set[str]
) -> None:
    """Latencies, and every way a call or a request went wrong."""
    stats = session.get(f"{fake_url}/_fake/stats", timeout=30).json()
    level.latencies = stats["latencies"]
    level.rest_errors = int(stats["counters"].get("rest_errors", 0))
    for call_id, kind, _ in level.placed:
        record = session.get(f"{fake_url}/_fake/calls/{call_id}", timeout=30).json()
        level.wrong_endings += record["disposition"] != EXPECTED[kind]
    received = Counter(x.phone for x in read_crm_log(crm_log))
    level.crm_missing = sum(1 for n in press1 if received[n] == 0)
    level.crm_extra = sum(c for n, c in received.items() if n not in press1) + sum(
        c - 1 for n, c in received.items() if n in press1 and c > 1
    )


def _histogram(text: str) -> list[tuple[float, float]]:
    """(upper bound s, cumulative count) of the event-to-command histogram."""
    buckets = []
    for match in re.finditer(
        r'^stasis_dnd_event_to_command_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
    ):
        buckets.append((float(match.group(1)), float(match.group(2))))
    return buckets


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> str:
    """ "<= X ms": the smallest bucket bound holding the q-quantile."""
    if not buckets or buckets[-1][1] == 0:
        return "-"
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return "> 2.5 s" if bound == float("inf") else f"<= {bound * 1000:g} ms"
    return "-"


def report(levels: list[Level], load: Load) -> str:
    rows = []
    for lv in levels:
        silent = {call_id for call_id, kind, _ in lv.placed if kind == "silent"}
        # A silent caller's prompt end starts the digit timer; the next command
        # comes when it fires: not event -> command, but how late the timer is.
        timed = [x for x in lv.latencies
                 if not (x["channel"] in silent and x["event"] == "PlaybackFinished"
                         and x["seconds"] >= DIGIT_TIMEOUT)]  # fmt: skip
        late = [x["seconds"] - DIGIT_TIMEOUT for x in lv.latencies if x not in timed]
        seconds = [x["seconds"] for x in timed]
        dtmf = [x["seconds"] for x in timed if x["event"] == "ChannelDtmfReceived"]
        errors = lv.wrong_endings + lv.crm_missing + lv.crm_extra + len(lv.log_problems)
        rows.append([
            lv.calls, lv.peak_in_app, len(seconds),
            ms(percentile(seconds, 50)), ms(percentile(seconds, 99)), ms(max(seconds, default=0.0)),
            ms(percentile(dtmf, 99)), ms(percentile(late, 99)),
            f"{bucket_quantile(lv.app_buckets, 0.5)} / {bucket_quantile(lv.app_buckets, 0.99)}",
            ms(lv.app_cpu / lv.calls), (lv.rss_peak - lv.rss_before) / lv.calls,
            f"{lv.fake_cpu / lv.wall * 100:.0f}%", errors, lv.rest_errors,
        ])  # fmt: skip
    headers = [
        "calls", "peak in app", "events timed", "p50 ms", "p99 ms", "max ms", "DTMF p99 ms",
        "timer late p99 ms",
        "inside app p50 / p99", "app CPU ms/call", "RSS KiB/call", "fake CPU", "errors",
        "REST 4xx/5xx",
    ]  # fmt: skip
    lines = [table(headers, rows), ""]
    lines.append(
        f"Callers arrive over {load.ramp:g} s and act {load.hold:g} s into a {load.prompt:g} s "
        "prompt; "
        "latency = fake queues the event -> fake receives the app's command (a silent "
        "caller's digit timeout is not an event: how late it fired is its own column). "
        "The first row is the baseline."
    )
    for lv in levels:
        if lv.log_problems:
            lines.append(f"\n{lv.calls} calls: {len(lv.log_problems)} app log lines at WARNING+:")
            lines += ["  " + x for x in lv.log_problems[:5]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_load", description=DESCRIPTION)
    parser.add_argument("--levels", default="10,100,500,1000", help="concurrent calls per level")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which calls arrive")
    parser.add_argument(
        "--hold", type=float, default=15.0, help="seconds into the prompt callers act"
    )
    parser.add_argument("--prompt", type=float, default=20.0, help="menu prompt seconds")
    parser.add_argument(
        "--quick", action="store_true", help="levels 10,100; ramp 2 s; hold 3 s; prompt 5 s"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.ramp, args.hold, args.prompt = "10,100", 2.0, 3.0, 5.0
    if not 0 < args.hold < args.prompt or args.ramp <= 0:
        parser.error("need 0 < --hold < --prompt and --ramp > 0")
    load = Load(args.ramp, args.hold, args.prompt)
    try:
        counts = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        parser.error("--levels must be positive call counts, e.g. 10,100")
    print(f"# Fake Asterisk load: one stasis-dnd run process\n\n{machine()}\n", flush=True)
    levels = []
    with tempfile.TemporaryDirectory(prefix="stasis-dnd-bench-") as tmp:
        for count in counts:
            folder = Path(tmp) / f"level-{count}"
            folder.mkdir()
            print(f"... {count} calls", flush=True)
            levels.append(run_level(count, load, folder))
    print()
    print(report(levels, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
