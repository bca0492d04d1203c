"""Final commands (hang up, continue) carried through ARI failures: retried
while the failure may pass, done on 404, reported once when stuck."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from stasis_dnd.ari.rest import AriError, AriRest, AriUnavailable, ChannelNotFound
from stasis_dnd.core import ContinueInDialplan, Hangup
from stasis_dnd.metrics import Metrics
from stasis_dnd.runtime.final_commands import FinalCommands, RetryFinal
from stasis_dnd.runtime.timers import TimerWheel

CHANNEL = "1700000000.1"
UNAVAILABLE = AriUnavailable("ARI at http://x/ari failed with 500 oops (DELETE /channels/c).", 500)
GONE = ChannelNotFound("Channel c is gone (404).", CHANNEL, 404)
REJECTED = AriError("ARI rejected DELETE /channels/c with 400 bad reason.", 400)
# One channel's work runs one item at a time (the dispatcher's promise).
SERIAL = threading.Lock()


class Rest:
    """Answers each hang-up or continue with the next scripted error (None: success)."""

    def __init__(self, *answers: AriError | None) -> None:
        self.answers = list(answers)
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def hangup(self, channel_id: str) -> None:
        self._answer(f"hangup {channel_id}")

    def continue_in_dialplan(self, channel_id: str, target: object = None) -> None:
        self._answer(f"continue {channel_id}" + (f" to {target}" if target else ""))

    def _answer(self, what: str) -> None:
        with self.lock:
            self.sent.append(what)
            error = self.answers.pop(0) if self.answers else None
        if error is not None:
            raise error


@pytest.fixture
def wheel() -> Iterator[TimerWheel]:
    timers = TimerWheel()
    timers.start()
    yield timers
    timers.stop()


@pytest.fixture
def make(wheel: TimerWheel, caplog: pytest.LogCaptureFixture) -> Callable[[Rest], FinalCommands]:
    caplog.set_level(logging.DEBUG, logger="stasis_dnd")

    def build(rest: Rest) -> FinalCommands:
        finals: FinalCommands

        def submit(channel_id: str, item: RetryFinal) -> None:
            with SERIAL:  # the dispatcher's part, without its threads
                finals.retry(channel_id)

        finals = FinalCommands(
            rest=cast(AriRest, rest), timers=wheel, submit=submit, metrics=Metrics()
        )
        return finals

    return build


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def metric(finals: FinalCommands, name: str, **labels: str) -> float:
    return finals._metrics.registry.get_sample_value(name, labels) or 0.0


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_success_at_once_leaves_nothing_behind(
    make: Callable[[Rest], FinalCommands], caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest()
    finals = make(rest)
    finals.send(CHANNEL, Hangup())
    assert rest.sent == [f"hangup {CHANNEL}"]
    assert finals.channel_ids() == []
    assert messages(caplog, logging.INFO) == []  # the common case is silent


def test_unavailable_twice_then_done(
    make: Callable[[Rest], FinalCommands], caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest(UNAVAILABLE, UNAVAILABLE)
    finals = make(rest)
    finals.send(CHANNEL, ContinueInDialplan())
    assert finals.retrying() == 1
    wait_for(lambda: finals.channel_ids() == [])
    assert rest.sent == [f"continue {CHANNEL}"] * 3
    assert metric(finals, "stasis_dnd_final_command_retries_total", command="continue") == 2
    [warning] = messages(caplog, logging.WARNING)  # one, for the first failure
    assert warning.startswith(f"event=continue_failed channel={CHANNEL} tries=1 ")
    assert messages(caplog, logging.INFO) == [f"event=continue_done channel={CHANNEL} tries=3"]


def test_404_while_retrying_means_the_channel_is_gone(
    make: Callable[[Rest], FinalCommands], caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest(UNAVAILABLE, GONE)
    finals = make(rest)
    finals.send(CHANNEL, Hangup())
    wait_for(lambda: finals.channel_ids() == [])
    assert len(rest.sent) == 2
    assert messages(caplog, logging.ERROR) == []
    assert metric(finals, "stasis_dnd_channels_stuck_total") == 0


def test_gone_at_once_is_done(make: Callable[[Rest], FinalCommands]) -> None:
    finals = make(Rest(GONE))
    finals.send(CHANNEL, Hangup())
    assert finals.channel_ids() == []


def test_left_the_app_while_retrying_stops_the_retries(
    make: Callable[[Rest], FinalCommands], caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest(*[UNAVAILABLE] * 100)
    finals = make(rest)
    finals.retry_for = 60.0
    finals.send(CHANNEL, Hangup())
    wait_for(lambda: len(rest.sent) >= 2)
    with SERIAL:
        finals.left(CHANNEL)
        sent = len(rest.sent)
    assert finals.channel_ids() == []
    assert f"event=hangup_not_needed channel={CHANNEL}" in caplog.text
    # A retry already due finds nothing to do; none is scheduled after it.
    finals.retry(CHANNEL)
    assert len(rest.sent) == sent


def test_an_error_that_cannot_pass_is_stuck_at_once_and_reported_once(
    make: Callable[[Rest], FinalCommands], caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest(REJECTED, REJECTED)
    finals = make(rest)
    finals.send(CHANNEL, Hangup())
    assert len(rest.sent) == 1
    assert finals.channel_ids() == [CHANNEL]
    assert finals.retrying() == 0
    # The sweep finds it still in the app: a new round, which fails again.
    assert finals.recover(CHANNEL, in_app=True)
    assert len(rest.sent) == 2
    [error] = messages(caplog, logging.ERROR)
    assert error.startswith(f"event=channel_stuck channel={CHANNEL} command=hangup tries=1 ")
    assert "400 bad reason" in error
    assert metric(finals, "stasis_dnd_channels_stuck_total") == 1
    # The third round goes through.
    assert finals.recover(CHANNEL, in_app=True)
    assert finals.channel_ids() == []
    assert f"event=hangup_done channel={CHANNEL} tries=1" in caplog.text
    assert not finals.recover(CHANNEL, in_app=True)  # no longer ours


def test_unavailable_past_the_retry_period_is_stuck_until_the_channel_leaves(
    make: Callable[[Rest], FinalCommands], caplog: pytest.LogCaptureFixture
) -> None:
    rest = Rest(*[UNAVAILABLE] * 1000)
    finals = make(rest)
    finals.retry_for = 0.3
    began = time.monotonic()
    finals.send(CHANNEL, Hangup())
    wait_for(lambda: "event=channel_stuck" in caplog.text)
    assert time.monotonic() - began >= 0.3
    assert len(rest.sent) >= 2
    assert finals.retrying() == 0
    assert metric(finals, "stasis_dnd_channels_stuck_total") == 1
    # Gone from the app (the sweep no longer lists it): forgotten.
    assert finals.recover(CHANNEL, in_app=False)
    assert finals.channel_ids() == []
