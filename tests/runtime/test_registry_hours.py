"""The shell decides business hours when a call starts (or is recovered), by
its wall clock in `[ivr] timezone`, and tells the flow: open or closed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from stasis_dnd.core import Channel, ChannelDtmfReceived, StasisStart
from stasis_dnd.hours import parse_closed_dates, parse_hours
from stasis_dnd.metrics import Metrics
from stasis_dnd.profiles import Profiles
from stasis_dnd.runtime.registry import CallRegistry, Recover
from stasis_dnd.settings import IvrSettings, Settings

CHANNEL = Channel("c1", "Up", "", "+79000000001", "en")
CLOSED = "sound:custom/IVR_DND_CLOSED"
MENU = "sound:custom/IVR_DND_OPERATORS"
WEEKDAYS: dict[str, Any] = {
    "answer_pause": 0,
    "hours": parse_hours("mon-fri 09:00-18:00"),
    "closed_dates": parse_closed_dates("2026-06-03"),
    "timezone": "Europe/Berlin",
    "outside_hours": "announce",
}


def registry(local_time: str, zone: str = "Europe/Berlin", **ivr: Any) -> tuple[Any, CallRegistry]:
    """A registry whose wall clock stands at `local_time` in `zone`."""
    rest = mock.Mock()
    rest.get_channel.return_value = {
        "id": "c1",
        "state": "Up",
        "caller": {"name": "", "number": "+79000000001"},
        "language": "en",
    }
    rest.get_variable.return_value = ""
    store = mock.Mock()
    store.stored_for_channel.return_value = False
    moment = datetime.fromisoformat(local_time).replace(tzinfo=ZoneInfo(zone)).timestamp()
    calls = CallRegistry(
        profiles=Profiles(Settings(ivr=IvrSettings(**{**WEEKDAYS, **ivr}))),
        rest=rest,
        store=store,
        timers=mock.Mock(),
        submit=lambda channel, item: None,
        metrics=Metrics(),
        id_prefix="x",
        clock=lambda: moment,
    )
    return rest, calls


@pytest.mark.parametrize(
    ("local_time", "zone", "heard"),
    [
        ("2026-06-01 17:59:59", "Europe/Berlin", MENU),  # Monday
        ("2026-06-01 18:00:00", "Europe/Berlin", CLOSED),
        ("2026-06-01 09:00:00", "Europe/Berlin", MENU),
        ("2026-06-01 08:59:59", "Europe/Berlin", CLOSED),
        ("2026-06-03 12:00:00", "Europe/Berlin", CLOSED),  # a closed date
        ("2026-06-06 12:00:00", "Europe/Berlin", CLOSED),  # Saturday
        # 17:30 in Moscow is 16:30 in Berlin: the schedule's zone counts.
        ("2026-06-01 17:30:00", "Europe/Moscow", MENU),
        ("2026-06-01 09:30:00", "Europe/Moscow", CLOSED),  # 08:30 in Berlin
    ],
)
def test_a_call_outside_the_schedule_starts_closed(local_time: str, zone: str, heard: str) -> None:
    rest, calls = registry(local_time, zone)
    calls.handle("c1", (0.0, 1, StasisStart(CHANNEL, ("TIMEOUT",))))
    assert rest.play.call_args.args[2] == heard


def test_a_recovered_call_is_judged_by_the_time_of_its_recovery() -> None:
    rest, calls = registry("2026-06-01 20:00:00")
    calls.handle("c1", (0.0, 1, Recover(True, 1)))
    assert rest.play.call_args.args[2] == CLOSED


def test_without_a_schedule_every_call_is_open() -> None:
    rest, calls = registry("2026-06-07 03:00:00", hours=(), closed_dates=())
    calls.handle("c1", (0.0, 1, StasisStart(CHANNEL, ("TIMEOUT",))))
    assert rest.play.call_args.args[2] == MENU


def test_unknown_stasis_arguments_are_logged_once_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _rest, calls = registry("2026-06-01 12:00:00")
    with caplog.at_level(logging.INFO, logger="stasis_dnd"):
        calls.handle("c1", (0.0, 1, StasisStart(CHANNEL, ("TIMEOUT", "qeue=999", "queue=1"))))
        calls.handle("c1", (0.0, 1, ChannelDtmfReceived("5")))
    ignored = [r.getMessage() for r in caplog.records if "stasis_args_ignored" in r.getMessage()]
    assert ignored == ["event=stasis_args_ignored channel=c1 args=('qeue',)"]  # names only
