"""The benchmarks (bench/) run with tiny parameters, so they cannot rot.

No timing is asserted: only that each script runs to the end and that what it
checks about the calls holds (the right number of calls, none wrong). The
real-Asterisk one needs the sandbox Asterisk the end-to-end tests use:
scripts/test runs it after the suite, under their lock.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.common import cpu_times, percentile, rss_kib, table
from bench.core import check, scenarios
from bench.fake_load import bucket_quantile
from bench.processes import read_crm_log
from bench.sandbox_kit import read_original_log, read_phone_log

REPO = Path(__file__).resolve().parent.parent


def run_bench(module: str, *args: str, timeout: float) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def table_rows(output: str) -> list[list[str]]:
    """The data rows of the first Markdown table in `output`, as cells."""
    rows = []
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("|--"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]


# --- the scripts ----------------------------------------------------------------


def test_core_benchmark_runs_every_scenario() -> None:
    output = run_bench("bench.core", "--calls", "50", "--rounds", "1", timeout=120)
    names = [row[0] for row in table_rows(output)]
    assert names == [s.name for s in scenarios()]
    assert re.search(r"All scenarios: [\d,]+ events/s through the core", output)


def test_fake_load_benchmark_handles_every_call_correctly() -> None:
    output = run_bench(
        "bench.fake_load", "--levels", "10", "--ramp", "0.5", "--hold", "0.5", "--prompt", "1.5",
        timeout=180,
    )  # fmt: skip
    (row,) = table_rows(output)
    assert row[0] == "10"  # calls
    assert int(row[2]) > 0  # events timed
    assert row[-2] == "0", output  # errors: wrong endings, CRM requests missing or doubled, log
    assert row[-1] == "0", output  # REST requests the fake answered with an error


def test_fake_load_refuses_a_hold_beyond_the_prompt() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.fake_load", "--hold", "30", "--prompt", "20"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--hold" in result.stderr


def test_every_core_scenario_matches_the_flow() -> None:
    for scenario in scenarios():
        check(scenario)  # raises SystemExit when the flow answers otherwise


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) != percentile([], 50)  # NaN


BURN = 0.3  # seconds of CPU each measured piece of work uses
# /proc counts CPU in clock ticks (10 ms), the kernel's own clock in nanoseconds.
AGREE = 0.1


# Computes until its process has used BURN more seconds of CPU (not wall time).
BURN_CHILD = f"""
import time
start = time.process_time()
while time.process_time() - start < {BURN}:
    sum(i * i for i in range(10_000))
"""


def test_cpu_times_agree_with_the_kernels_own_clocks() -> None:
    pid = os.getpid()
    before, clock, children = cpu_times(pid), time.process_time(), os.times()
    exec(BURN_CHILD, {})  # this process's own CPU
    subprocess.run(  # a reaped child: its CPU counts as children, not own
        [sys.executable, "-c", BURN_CHILD], check=True, timeout=60
    )
    used, clock_used, after = cpu_times(pid) - before, time.process_time() - clock, os.times()
    children_used = (after.children_user + after.children_system) - (
        children.children_user + children.children_system
    )
    assert used.own >= BURN - AGREE
    assert used.own == pytest.approx(clock_used, abs=AGREE)
    assert used.children >= BURN - AGREE
    assert used.children == pytest.approx(children_used, abs=AGREE)


def test_memory_of_this_process() -> None:
    assert 1000 < rss_kib(os.getpid()) < 10_000_000


def test_table_is_markdown() -> None:
    text = table(["a", "b"], [[1, 2.345], ["x", float("nan")]])
    assert text.splitlines() == ["| a | b    |", "|---|------|", "| 1 | 2.35 |", "| x | -    |"]


def test_histogram_bucket_quantile() -> None:
    buckets = [(0.001, 50.0), (0.005, 99.0), (0.01, 100.0), (float("inf"), 100.0)]
    assert bucket_quantile(buckets, 0.5) == "<= 1 ms"
    assert bucket_quantile(buckets, 0.99) == "<= 5 ms"
    assert bucket_quantile([(float("inf"), 0.0)], 0.5) == "-"


def test_log_readers(tmp_path: Path) -> None:
    phone = tmp_path / "phone.log"
    phone.write_text(
        "1795759820.100000 before call-1-phone\n"
        "1795759820.310000 after call-1-phone\n"
        "1795759821.000000 before call-2-phone\n"  # never finished pressing
    )
    stamps = read_phone_log(phone)
    assert list(stamps) == ["call-1"]
    assert stamps["call-1"].after - stamps["call-1"].before == pytest.approx(0.21)
    agi = tmp_path / "agi.log"
    agi.write_text(
        "1795759820.4\trequest\tcall-1\t+79001234567\n1795759820.5\tanswer\tcall-1\tok\n"
    )
    assert read_original_log(agi) == {"call-1": {"request": 1795759820.4, "answer": 1795759820.5}}
    crm = tmp_path / "crm.tsv"
    crm.write_text("1795759820.45\tGET\t+79001234567\thtml\ngarbage\n")
    (line,) = read_crm_log(crm)
    assert (line.method, line.phone, line.answer) == ("GET", "+79001234567", "html")
    assert read_crm_log(tmp_path / "missing.tsv") == []


def test_http_stack_benchmark_measures_each_client_for_each_request() -> None:
    output = run_bench("bench.http_stack", "--rounds", "1", "--requests", "5", timeout=120)
    rows = [(row[0], row[1]) for row in table_rows(output)]
    clients = ("http_pool", "urllib3", "requests")
    assert rows == [(kind, name) for kind in ("ARI", "CRM") for name in clients]
    assert re.search(r"Per press-1 call \(4 ARI requests \+ 1 CRM request\)", output)
