"""Business hours: the weekly schedule and closed dates of `[ivr]`, read from
their INI text, and whether a given moment is inside them.

Everything here is pure: the shell passes the current time, already in the
schedule's time zone, and hands the answer (open or closed) to the call flow.

A schedule is a comma-separated list of items "DAYS HH:MM-HH:MM", e.g.
"mon-fri 09:00-18:00, sat 10:00-14:00". DAYS is one day (mon ... sun) or a
range (mon-fri; fri-mon wraps over the week end). An item may list several
ranges ("mon-fri 09:00-13:00 14:00-18:00"). A range that ends at or before its
start crosses midnight: "fri 22:00-02:00" is Friday 22:00 to Saturday 02:00.
"24:00" ends a range at midnight. Times are local wall-clock times: a change
to or from daylight saving time moves no window. An empty schedule is open
all week.

A closed date closes every moment whose local date it is, even within a range
that began the day before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 24 * 3600
_WEEK = 7 * _DAY
_RANGE = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class Window:
    """Open from `start` to `end` (exclusive), in seconds after Monday 00:00
    local time; `end` may pass the week's end (a Sunday night range)."""

    start: int
    end: int

    def __str__(self) -> str:
        day, start = divmod(self.start, _DAY)
        end = start + self.end - self.start
        return f"{DAYS[day]} {_clock(start)}-{_clock(end % _DAY or _DAY)}"


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_hours(text: str) -> tuple[Window, ...]:
    """The windows of a schedule ("" = none: open all week); raises ValueError."""
    windows: list[Window] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        days, *ranges = item.lower().split()
        if not ranges:
            raise ValueError(
                f"hours item {item!r} needs days and a time range, e.g. mon-fri 09:00-18:00"
            )
        for day in _days(days, item):
            for span in ranges:
                windows.append(_window(day, span, item))
    return tuple(windows)


def _days(text: str, item: str) -> list[int]:
    first, _, last = text.partition("-")
    names = [first, last or first]
    for name in names:
        if name not in DAYS:
            raise ValueError(f"hours item {item!r}: {name!r} is not a day; use {', '.join(DAYS)}")
    start, end = (DAYS.index(name) for name in names)
    return [(start + step) % 7 for step in range((end - start) % 7 + 1)]


def _window(day: int, span: str, item: str) -> Window:
    match = _RANGE.fullmatch(span)
    if not match:
        raise ValueError(f"hours item {item!r}: {span!r} is not a range such as 09:00-18:00")
    hour1, minute1, hour2, minute2 = (int(part) for part in match.groups())
    if hour1 > 23 or minute1 > 59 or hour2 > 24 or minute2 > 59 or (hour2 == 24 and minute2):
        raise ValueError(f"hours item {item!r}: {span!r} has a time that does not exist")
    start = hour1 * 3600 + minute1 * 60
    end = hour2 * 3600 + minute2 * 60
    if end == start:
        raise ValueError(f"hours item {item!r}: {span!r} is empty; a whole day is 00:00-24:00")
    if end < start:
        end += _DAY  # crosses midnight into the next day
    return Window(day * _DAY + start, day * _DAY + end)


def parse_closed_dates(text: str) -> tuple[date, ...]:
    """Dates written YYYY-MM-DD, separated by commas or spaces; raises ValueError."""
    dates = []
    for word in text.replace(",", " ").split():
        try:
            dates.append(date.fromisoformat(word))
        except ValueError:
            raise ValueError(f"closed date {word!r} is not a date such as 2026-12-31") from None
    return tuple(dates)


def is_open(when: datetime, hours: Iterable[Window], closed_dates: Iterable[date] = ()) -> bool:
    """Whether `when`, read as the wall-clock time in its own zone, is inside
    the schedule: not on a closed date, and in a window (or no windows at all)."""
    if when.date() in set(closed_dates):
        return False
    windows = tuple(hours)
    if not windows:
        return True
    moment = when.weekday() * _DAY + when.hour * 3600 + when.minute * 60 + when.second
    # A Sunday night range runs past the week's end into Monday.
    return any(w.start <= t < w.end for w in windows for t in (moment, moment + _WEEK))


def open_at(
    timestamp: float, hours: Iterable[Window], closed_dates: Iterable[date], timezone: str
) -> bool:
    """Whether the Unix time `timestamp` is within the hours, in the named
    zone ("" is the machine's own)."""
    zone = ZoneInfo(timezone) if timezone else None  # zoneinfo caches its zones
    return is_open(datetime.fromtimestamp(timestamp, zone).astimezone(zone), hours, closed_dates)


def describe_hours(hours: Iterable[Window]) -> str:
    """The schedule as text parse_hours reads back; "" for open all week."""
    return ", ".join(str(window) for window in hours)
