"""Business hours: the schedule's syntax, and open or closed at the edges of
its windows, across midnight, on closed dates and across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stasis_dnd.hours import describe_hours, is_open, parse_closed_dates, parse_hours

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = parse_hours("mon-fri 09:00-18:00, sat 10:00-14:00")


def at(text: str, zone: timezone | ZoneInfo = BERLIN) -> datetime:
    """A local time in `zone`, "2026-06-01 09:00:00" (2026-06-01 is a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-06-01 08:59:59", False),
        ("2026-06-01 09:00:00", True),
        ("2026-06-01 17:59:59", True),
        ("2026-06-01 17:59:59.999999", True),
        ("2026-06-01 18:00:00", False),
        ("2026-06-05 12:00:00", True),  # Friday
        ("2026-06-06 09:59:59", False),  # Saturday
        ("2026-06-06 10:00:00", True),
        ("2026-06-06 14:00:00", False),
        ("2026-06-07 12:00:00", False),  # Sunday
    ],
)
def test_a_window_opens_at_its_start_and_closes_at_its_end(moment: str, expected: bool) -> None:
    assert is_open(at(moment), OFFICE) is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-06-05 21:59:59", False),  # Friday
        ("2026-06-05 22:00:00", True),
        ("2026-06-05 23:59:59", True),
        ("2026-06-06 00:00:00", True),  # Saturday
        ("2026-06-06 01:59:59", True),
        ("2026-06-06 02:00:00", False),
        ("2026-06-04 23:00:00", False),  # Thursday night is not Friday night
        ("2026-06-07 01:00:00", False),  # nor is Saturday night
    ],
)
def test_a_range_ending_before_it_starts_crosses_midnight(moment: str, expected: bool) -> None:
    assert is_open(at(moment), parse_hours("fri 22:00-02:00")) is expected


def test_a_sunday_night_range_runs_into_monday() -> None:
    night = parse_hours("sun 23:00-01:00")
    assert is_open(at("2026-06-07 23:30:00"), night)
    assert is_open(at("2026-06-08 00:59:59"), night)  # Monday, the week's start
    assert not is_open(at("2026-06-08 01:00:00"), night)


def test_24_00_ends_a_range_at_midnight() -> None:
    day = parse_hours("mon 00:00-24:00")
    assert is_open(at("2026-06-01 00:00:00"), day)
    assert is_open(at("2026-06-01 23:59:59"), day)
    assert not is_open(at("2026-06-02 00:00:00"), day)


def test_day_ranges_wrap_over_the_week_end_and_items_may_list_several_ranges() -> None:
    weekend = parse_hours("fri-mon 12:00-13:00 15:00-16:00")
    assert describe_hours(weekend) == (
        "fri 12:00-13:00, fri 15:00-16:00, sat 12:00-13:00, sat 15:00-16:00, "
        "sun 12:00-13:00, sun 15:00-16:00, mon 12:00-13:00, mon 15:00-16:00"
    )
    assert is_open(at("2026-06-07 15:30:00"), weekend)  # Sunday
    assert not is_open(at("2026-06-07 14:00:00"), weekend)
    assert not is_open(at("2026-06-03 12:30:00"), weekend)  # Wednesday


def test_the_schedule_reads_back_as_written() -> None:
    text = "mon 09:00-18:00, fri 22:00-02:00, sun 23:30-24:00"
    assert describe_hours(parse_hours(text)) == text
    assert parse_hours(describe_hours(OFFICE)) == OFFICE


def test_no_schedule_is_open_all_week_but_closed_dates_still_close() -> None:
    assert parse_hours("") == () == parse_hours(" , ")
    assert is_open(at("2026-06-07 03:00:00"), ())
    assert not is_open(at("2026-12-31 12:00:00"), (), parse_closed_dates("2026-12-31"))


def test_a_closed_date_closes_the_whole_local_day() -> None:
    closed = parse_closed_dates("2026-06-01, 2026-06-06")
    assert not is_open(at("2026-06-01 09:00:00"), OFFICE, closed)
    assert not is_open(at("2026-06-01 12:00:00"), OFFICE, closed)
    assert is_open(at("2026-06-02 09:00:00"), OFFICE, closed)
    # The date is local: 23:30 UTC on 31 May is already 1 June in Berlin.
    utc = datetime(2026, 5, 31, 23, 30, tzinfo=UTC)
    assert not is_open(utc.astimezone(BERLIN), (), closed)
    assert is_open(utc, (), closed)
    # Even inside a range that began the day before.
    night = parse_hours("fri 22:00-02:00")
    assert is_open(at("2026-06-05 23:00:00"), night, closed)
    assert not is_open(at("2026-06-06 01:00:00"), night, closed)


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # 2026-03-29: Berlin goes from CET (+1) to CEST (+2) at 02:00 local.
        ("2026-03-29 06:59:59", False),  # 08:59:59 CEST
        ("2026-03-29 07:00:00", True),  # 09:00 CEST: still 09:00 local
        ("2026-03-29 15:59:59", True),
        ("2026-03-29 16:00:00", False),  # 18:00 CEST
        ("2026-03-28 08:00:00", True),  # the Saturday before: 09:00 CET
        ("2026-03-28 07:59:59", False),
        # 2026-10-25: back from CEST to CET at 03:00 local.
        ("2026-10-25 07:59:59", False),  # 08:59:59 CET
        ("2026-10-25 08:00:00", True),  # 09:00 CET
        ("2026-10-25 16:59:59", True),
        ("2026-10-25 17:00:00", False),  # 18:00 CET
        ("2026-10-24 07:00:00", True),  # the Saturday before: 09:00 CEST
    ],
)
def test_a_schedule_in_local_time_stays_local_across_a_dst_change(utc: str, expected: bool) -> None:
    every_day = parse_hours("mon-sun 09:00-18:00")
    moment = at(utc, UTC).astimezone(BERLIN)
    assert is_open(moment, every_day) is expected


def test_the_hour_that_repeats_in_autumn_is_open_both_times() -> None:
    night = parse_hours("sun 02:00-03:00")
    first = at("2026-10-25 00:30:00", UTC).astimezone(BERLIN)  # 02:30 CEST
    second = (first.astimezone(UTC) + timedelta(hours=1)).astimezone(BERLIN)  # 02:30 CET
    assert (first.hour, second.hour, first.fold, second.fold) == (2, 2, 0, 1)
    assert is_open(first, night) and is_open(second, night)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fri", "hours item 'mon-fri' needs days and a time range, e.g. mon-fri 09:00-18:00"),
        (
            "monday 09:00-18:00",
            "hours item 'monday 09:00-18:00': 'monday' is not a day; "
            "use mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            "mon-fr 09:00-18:00",
            "hours item 'mon-fr 09:00-18:00': 'fr' is not a day; "
            "use mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            "mon 9-18",
            "hours item 'mon 9-18': '9-18' is not a range such as 09:00-18:00",
        ),
        (
            "mon 09:00-24:01",
            "hours item 'mon 09:00-24:01': '09:00-24:01' has a time that does not exist",
        ),
        (
            "mon 24:00-02:00",
            "hours item 'mon 24:00-02:00': '24:00-02:00' has a time that does not exist",
        ),
        (
            "mon 09:60-10:00",
            "hours item 'mon 09:60-10:00': '09:60-10:00' has a time that does not exist",
        ),
        (
            "mon 09:00-09:00",
            "hours item 'mon 09:00-09:00': '09:00-09:00' is empty; a whole day is 00:00-24:00",
        ),
    ],
)
def test_a_bad_schedule_is_named_in_one_sentence(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_hours(text)
    assert str(caught.value) == message


def test_closed_dates_are_iso_dates_and_a_bad_one_is_named() -> None:
    assert parse_closed_dates("2026-12-31, 2027-01-01\n2027-01-07") == (
        date(2026, 12, 31),
        date(2027, 1, 1),
        date(2027, 1, 7),
    )
    assert parse_closed_dates("") == ()
    with pytest.raises(ValueError) as caught:
        parse_closed_dates("2026-12-31, 31.12.2026")
    assert str(caught.value) == "closed date '31.12.2026' is not a date such as 2026-12-31"


moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.timezones()
)
dates = st.lists(st.dates(min_value=date(1971, 1, 1), max_value=date(2099, 12, 31)), max_size=5)
times = st.times().map(lambda t: t.strftime("%H:%M"))
items = st.tuples(st.sampled_from(["mon", "tue-thu", "fri-mon", "sun"]), times, times).filter(
    lambda item: item[1] != item[2]
)


@given(moments, st.lists(items, max_size=4), dates)
def test_any_aware_moment_and_schedule_is_decided_without_raising(
    when: datetime, chosen: list[tuple[str, str, str]], closed: list[date]
) -> None:
    hours = parse_hours(", ".join(f"{days} {start}-{end}" for days, start, end in chosen))
    assert is_open(when, hours, closed) in (True, False)
    if when.date() in closed:
        assert not is_open(when, hours, closed)


@given(moments, times, times, dates)
def test_a_schedule_covering_the_whole_week_is_open_except_on_closed_dates(
    when: datetime, start: str, middle: str, closed: list[date]
) -> None:
    # Every day in two ranges that meet, one of them crossing midnight (or
    # 00:00-24:00 when the meeting point is midnight).
    if start == middle:
        hours = parse_hours("mon-sun 00:00-24:00")
    else:
        hours = parse_hours(f"mon-sun {start}-{middle}, mon-sun {middle}-{start}")
    assert is_open(when, hours, closed) is (when.date() not in closed)
