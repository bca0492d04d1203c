"""What the benchmarks share: percentiles, CPU and memory of a process from
/proc, the machine's description and a plain-text table.

CPU time comes from /proc/<pid>/stat (utime + stime of all the process's
threads, and cutime + cstime of the children it has reaped), in clock ticks
of 10 ms: a benchmark divides a difference over many calls, so the tick is
far below the figures it prints.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank `p`-th percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class CpuTimes:
    """Seconds of CPU a process used: its own threads, and its reaped children."""

    own: float
    children: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.own - other.own, self.children - other.children)

    @property
    def total(self) -> float:
        return self.own + self.children


def cpu_times(pid: int) -> CpuTimes:
    """utime + stime, cutime + cstime of `pid` (OSError if it is gone)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in range(11, 15))
    return CpuTimes((utime + stime) / _TICK, (cutime + cstime) / _TICK)


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"no VmRSS for pid {pid}")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(extra: str = "") -> str:
    """One line: date, cores, CPU model, Python (and `extra`, e.g. Asterisk's version)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [now, f"{os.cpu_count()} cores", cpu_model(), f"Python {platform.python_version()}"]
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def git_revision() -> str:
    """The checkout's commit (with "+changes" when the tree differs), or "unknown"."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+changes" if dirty else "")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def ms(seconds: float) -> float:
    return seconds * 1000.0
