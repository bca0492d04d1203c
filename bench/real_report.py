"""The real-Asterisk benchmark's output: the table, the ratios app / original
and the issue's targets, each said to be met or not."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench.common import ms, percentile, table

if TYPE_CHECKING:
    from bench.real_asterisk import Phase


def report(phases: list[Phase]) -> str:
    rows = []
    for p in phases:
        rows.append([
            f"{p.rate:g}/s", p.setup, len(p.calls), f"{p.correct}/{len(p.calls)}",
            ms(percentile(p.latencies, 50)), ms(percentile(p.latencies, 99)),
            ms(max(p.latencies, default=float("nan"))),
            p.asterisk_ms, p.helper_ms, p.total_ms,
        ])  # fmt: skip
    out = [table(["load", "setup", "calls", "correct", "DTMF->CRM p50 ms", "p99 ms", "max ms",
                  "Asterisk CPU ms/call", "app or AGI CPU ms/call", "total CPU ms/call"],
                 rows)]  # fmt: skip
    out.append("\nCPU per call: idle CPU over the phase subtracted (with it: the details below).")
    ratios = []
    for rate in sorted({p.rate for p in phases}):
        pair = {p.setup: p for p in phases if p.rate == rate}
        if {"app", "original"} <= pair.keys():
            a, o = pair["app"], pair["original"]
            ratios.append([
                f"{rate:g}/s",
                _ratio(percentile(a.latencies, 50), percentile(o.latencies, 50)),
                _ratio(percentile(a.latencies, 99), percentile(o.latencies, 99)),
                _ratio(a.total_ms, o.total_ms),
            ])  # fmt: skip
    if ratios:
        out += ["", "Ratios app / original (below 1: the app is faster or cheaper):", ""]
        out.append(table(["load", "p50", "p99", "total CPU per call"], ratios))
    details = []
    for p in phases:
        extra = f"SendDTMF overshoot p99 {ms(percentile(p.overshoot, 99)):.1f} ms"
        if p.agi_start:
            extra += f"; key-up -> PHP sends p50 {ms(percentile(p.agi_start, 50)):.0f} ms"
        if p.setup == "app":
            extra += (f"; the app's idle CPU ({ms(p.idle_app):.2f} ms/s) over the phase: "
                      f"{p.per_call(p.idle_app * p.seconds):.2f} ms/call")  # fmt: skip
        details.append(f"- {p.rate:g}/s {p.setup}: {extra}; calls placed in {p.placing:.0f} s, "
                       f"idle again {p.seconds:.0f} s after the first; "
                       f"CPU with idle {p.gross_ms:.1f} ms/call")  # fmt: skip
        details += [f"    {x}" for x in p.problems[:5]]
        if len(p.problems) > 5:
            details.append(f"    ... and {len(p.problems) - 5} more")
    return "\n".join([*out, "", *details])


def _ratio(a: float, b: float) -> str:
    return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2g}"


def targets(phases: list[Phase]) -> str:
    """The issue's targets, met or not."""
    by = {(p.rate, p.setup): p for p in phases}
    lines = []
    for rate in (5.0, 10.0):
        a, o = by.get((rate, "app")), by.get((rate, "original"))
        if a and o:
            p50v, p99v = ms(percentile(a.latencies, 50)), ms(percentile(a.latencies, 99))
            op99 = ms(percentile(o.latencies, 99))
            lines.append(f"{_mark(p50v <= 10)} {rate:g}/s: app p50 {p50v:.1f} ms <= 10 ms")
            lines.append(f"{_mark(p99v <= op99 / 2)} {rate:g}/s: app p99 {p99v:.1f} ms <= "
                         f"0.5 x original p99 ({op99 / 2:.1f} ms)")  # fmt: skip
    # The issue sets this at 20/s, where its original saturated; higher rates too.
    for p in phases:
        if p.setup == "app" and p.rate >= 20:
            p99v = ms(percentile(p.latencies, 99))
            ok = p.correct == len(p.calls)
            lines.append(f"{_mark(p99v < 100 and ok)} {p.rate:g}/s: app p99 {p99v:.1f} ms "
                         f"< 100 ms, correct {p.correct}/{len(p.calls)}")  # fmt: skip
    for p in phases:
        o = by.get((p.rate, "original"))
        if p.setup == "app" and o:
            total, orig = p.total_ms, o.total_ms
            lines.append(
                f"{_mark(total <= 0.6 * orig)} {p.rate:g}/s: Asterisk + app "
                f"{total:.1f} ms/call <= 0.6 x original ({0.6 * orig:.1f} ms)"
            )
            lines.append(f"{_mark(p.helper_ms <= 5)} {p.rate:g}/s: app's own CPU "
                         f"{p.helper_ms:.1f} ms/call <= 5 ms")  # fmt: skip
    lines += floor_targets(by)
    return "\n".join(lines)


def floor_targets(by: dict[tuple[float, str], Phase]) -> list[str]:
    """The targets of halving the app's own CPU, where measured."""
    lines = []
    a, o = by.get((10.0, "app")), by.get((10.0, "original"))
    if a:
        lines.append(f"{_mark(a.helper_ms <= 4)} 10/s: app's own CPU {a.helper_ms:.1f} ms/call "
                     "<= 4 ms")  # fmt: skip
    if a and o:
        limit = 0.45 * o.total_ms
        lines.append(f"{_mark(a.total_ms <= limit)} 10/s: Asterisk + app "
                     f"{a.total_ms:.1f} ms/call <= 0.45 x original ({limit:.1f} ms)")  # fmt: skip
    fast = by.get((40.0, "app"))
    if fast:
        p99v, ok = ms(percentile(fast.latencies, 99)), fast.correct == len(fast.calls)
        lines.append(f"{_mark(p99v <= 50 and ok)} 40/s: app p99 {p99v:.1f} ms <= 50 ms, "
                     f"correct {fast.correct}/{len(fast.calls)}")  # fmt: skip
    return lines


def _mark(ok: bool) -> str:
    return "MET    " if ok else "NOT MET"
