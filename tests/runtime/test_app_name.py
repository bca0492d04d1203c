"""Waiting for the ARI app name after another process took it: looks with
back-off, two looks `confirm` apart must both find the name free."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from stasis_dnd.ari.rest import AriError, AriUnavailable
from stasis_dnd.backoff import Backoff
from stasis_dnd.guard import ThreadErrors
from stasis_dnd.metrics import Metrics
from stasis_dnd.runtime.app_name import wait_for_name

HELD = {"name": "stasis-dnd", "channel_ids": []}
FREE = AriError("ARI rejected GET /applications/{app} with 404 Application not found.", 404)


class Rest:
    """Answers GET /applications/{app} from a script: a dict, or an exception to raise."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.looks = 0

    def application(self, app: str) -> dict[str, Any]:
        self.looks += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(rest: Rest, *, stop_after: int = 100) -> tuple[bool, list[float], Metrics]:
    waits: list[float] = []
    metrics = Metrics()

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return len(waits) > stop_after

    free = wait_for_name(
        rest,  # type: ignore[arg-type]
        "stasis-dnd",
        wait=wait,
        backoff=Backoff(2.0, 60.0, rng=random.Random(1)),
        confirm=6.0,
        metrics=metrics,
        errors=ThreadErrors(metrics.thread_errors),
    )
    return free, waits, metrics


def checks(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "stasis_dnd_app_name_checks_total", {"result": result}
    )
    return value or 0.0


def test_free_on_two_looks_in_a_row_confirm_apart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    # A brief gap in the holder's connection (free, then held again) is not free.
    rest = Rest(HELD, FREE, HELD, HELD, FREE, FREE)
    free, waits, metrics = run(rest)
    assert free
    assert rest.looks == 6 and rest.answers == []
    # Back-off between looks at a held name; exactly `confirm` before the second look.
    assert waits[2] == 6.0 and waits[5] == 6.0
    assert all(w < 6.0 for w in (waits[0], waits[1])) and waits[3] < 8.0
    assert checks(metrics, "held") == 3 and checks(metrics, "free") == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # held once at info (later ones at debug), then free
    assert lines[0].startswith("event=app_name_held app=stasis-dnd ")
    assert lines[1] == "event=app_name_free app=stasis-dnd (nobody holds it; reconnecting)"


def test_the_looks_back_off_up_to_the_cap() -> None:
    free, waits, _ = run(Rest(*[HELD] * 12), stop_after=12)
    assert not free
    # uniform(0, min(60, 2 * 2**n)): never past the cap, and not all short.
    assert all(0 <= w <= min(60.0, 2.0 * 2**n) for n, w in enumerate(waits))
    assert max(waits[6:]) > 8.0


def test_stopping_ends_the_wait_without_another_look() -> None:
    rest = Rest(HELD)
    free, waits, _ = run(rest, stop_after=1)
    assert not free
    assert rest.looks == 1 and len(waits) == 2


def test_an_error_is_not_taken_for_free(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    down = AriUnavailable("ARI at http://pbx:8088 failed with 500 ().", 500)
    # An error between two free looks starts the confirmation again.
    rest = Rest(FREE, down, down, ValueError("bad shape"), FREE, FREE)
    free, waits, metrics = run(rest)
    assert free and rest.looks == 6
    assert checks(metrics, "failed") == 3
    assert waits[1] == 6.0 and waits[2] != 6.0 and waits[5] == 6.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("event=app_name_check_failed")
    thread_errors = metrics.registry.get_sample_value(
        "stasis_dnd_thread_errors_total", {"thread": "app-name-wait"}
    )
    assert thread_errors == 1
