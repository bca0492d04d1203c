"""Between the real-Asterisk benchmark's phases: wait until Asterisk is idle
again, so one setup's drain is never measured as the next one's load.

"Idle" is: no channel left on Asterisk (anyone's: a sandbox in use by
nobody else has none) and the CPU of Asterisk and of the app, over a short
window, back near what they used before the first phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.common import ms

# A process is back to idle when a window's CPU rate is at most this much
# above its idle rate (other work on a shared machine moves it a little).
_IDLE_MARGIN = 0.010  # CPU seconds per second
_WINDOW = 1.0


def thread_cpu(pid: int) -> float:
    """CPU seconds of the threads `pid` has now, in nanoseconds' precision
    (/proc/<pid>/task/*/schedstat), where /proc/<pid>/stat counts 10 ms ticks:
    an idle process uses a few ms per second. Threads that ended are not in it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


def idle_cpu(pids: list[int], seconds: float) -> list[float]:
    """CPU seconds per second each process uses while nothing happens."""
    before = [thread_cpu(pid) for pid in pids]
    time.sleep(seconds)
    return [(thread_cpu(pid) - b) / seconds for pid, b in zip(pids, before, strict=True)]


def wait_idle(
    channels: Callable[[], set[str]],
    pids: list[int],
    idle: list[float],
    timeout: float,
) -> str:
    """Block until no channel is left and every process in `pids` is back to
    its `idle` CPU rate for one window; "" then, else what was still busy
    when `timeout` s had passed.

    `channels` raises RuntimeError when Asterisk is too busy to answer.
    """
    deadline = time.monotonic() + timeout
    busy = "nothing checked yet"
    while time.monotonic() < deadline:
        try:
            left = channels()
        except RuntimeError as error:
            left, busy = {"?"}, str(error)
        if left:
            if left != {"?"}:
                busy = f"{len(left)} channel(s) left, e.g. {sorted(left)[0]}"
            time.sleep(0.2)
            continue
        rates = idle_cpu(pids, _WINDOW)
        over = [(r, i) for r, i in zip(rates, idle, strict=True) if r > i + _IDLE_MARGIN]
        if not over:
            return ""
        busy = "CPU above idle: " + ", ".join(
            f"{ms(r):.0f} ms/s (idle {ms(i):.0f})" for r, i in over
        )
    return f"not idle after {timeout:.0f} s: {busy}"
