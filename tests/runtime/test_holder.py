"""The election of one holder per Asterisk and app name (`runtime.holder`),
with scripted lock sessions and a recorded wait instead of a clock."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import pytest

from stasis_dnd.metrics import Metrics
from stasis_dnd.runtime.holder import (
    CHECK,
    CHECK_TIMEOUT,
    FENCE,
    HAND_BACK,
    IDLE_SESSION_TIMEOUT,
    POLL,
    REJOIN,
    Holder,
    lock_key,
)


def test_the_intervals_keep_a_lost_holder_off_the_socket_before_a_standby_connects() -> None:
    assert (POLL, CHECK, CHECK_TIMEOUT, HAND_BACK) == (1.0, 1.0, 1.0, 0.5)
    # A holder whose session ended has closed its socket before the new one connects.
    assert FENCE == 3.0 and FENCE > CHECK + CHECK_TIMEOUT + HAND_BACK
    assert math.ceil(FENCE / CHECK) == 3  # the fence is three checks
    # A holder cut off from the database gives up before the server frees the lock.
    assert IDLE_SESSION_TIMEOUT > CHECK + CHECK_TIMEOUT
    # SIGKILL to served: one poll, the fence, the connect: within the 10 s target.
    assert POLL + FENCE < 10.0
    # An instance whose lock connection just failed lets a standby poll first.
    assert REJOIN == 3.0 and REJOIN > POLL


def test_the_lock_key_is_the_asterisk_and_the_app_name() -> None:
    key = lock_key("http://pbx1.example:8088", "stasis-dnd")
    assert key == lock_key("http://PBX1.example:8088/", "stasis-dnd")
    assert key == lock_key("ws://pbx1.example:8088/ari", "stasis-dnd")
    assert key != lock_key("http://pbx2.example:8088", "stasis-dnd")
    assert key != lock_key("http://pbx1.example:8089", "stasis-dnd")
    assert key != lock_key("http://pbx1.example:8088", "stasis-dnd-2")
    assert lock_key("http://pbx1.example", "a") == lock_key("http://pbx1.example:80", "a")
    assert lock_key("https://pbx1.example", "a") == lock_key("https://pbx1.example:443", "a")
    assert -(2**63) <= key < 2**63
    # Stable across processes and versions: every instance must compute the same key.
    assert key == lock_key("http://pbx1.example:8088", "stasis-dnd") == 756734862365545507


class Session:
    """A scripted lock session: `grants` answers to try_lock, then checks."""

    def __init__(self, grants: list[bool], checks: list[BaseException | None]) -> None:
        self.grants = grants
        self.checks = checks
        self.closed = False

    def try_lock(self) -> bool:
        return self.grants.pop(0)

    def check(self) -> None:
        outcome = self.checks.pop(0) if self.checks else None
        if outcome is not None:
            raise outcome

    def close(self) -> None:
        self.closed = True


class Recorder:
    """The injected wait: records each interval; True (stop) after `limit`."""

    def __init__(self, limit: int) -> None:
        self.waits: list[float] = []
        self.limit = limit
        self.events: list[str] = []

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return len(self.waits) >= self.limit


def holder(
    opens: list[Session | Exception], wait: Recorder, metrics: Metrics | None = None
) -> Holder:
    def open_session() -> Session:
        item = opens.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return Holder(
        "stasis-dnd",
        open_session,
        on_acquired=lambda: wait.events.append(f"acquired after {len(wait.waits)} waits"),
        on_lost=lambda: wait.events.append(f"lost after {len(wait.waits)} waits"),
        gauge=metrics.lock_held if metrics else None,
        wait=wait,
    )


def test_a_standby_asks_every_poll_then_waits_the_fence_before_it_connects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "stasis_dnd")
    session = Session([False, False, True], [])
    wait = Recorder(limit=7)
    metrics = Metrics()
    holder([session], wait, metrics).run()
    # Two refusals, the fence (three checks, or the server ends the idle session), holding.
    assert wait.waits == [POLL, POLL, CHECK, CHECK, CHECK, CHECK, CHECK]
    assert wait.events == ["acquired after 5 waits"]
    assert metrics.lock_held._value.get() == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("event=standby" in m for m in messages) == 1  # once, not each poll
    assert sum("event=holder" in m for m in messages) == 1
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_stopped_during_the_fence_it_never_connects() -> None:
    wait = Recorder(limit=1)
    holder([Session([True], [])], wait).run()
    assert wait.waits == [CHECK]
    assert wait.events == []


def test_a_lock_lost_during_the_fence_never_connects() -> None:
    lost = Session([True], [None, ConnectionError("terminating connection")])
    wait = Recorder(limit=4)
    holder([lost, Session([False], [])], wait).run()
    assert wait.waits == [CHECK, CHECK, POLL, POLL]
    assert wait.events == []
    assert lost.closed


def test_a_failed_check_hands_over_and_polls_again_with_a_new_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = ConnectionError("server closed the connection\nmore")
    first = Session([True], [None, None, None, None, failed])
    second = Session([False, True], [])
    wait = Recorder(limit=11)
    metrics = Metrics()
    holder([first, second], wait, metrics).run()
    # The fence, two checks (the second fails); after REJOIN the new session:
    # refused, poll, granted.
    assert wait.waits == [CHECK] * 5 + [REJOIN, POLL] + [CHECK] * 4
    assert wait.events == [
        "acquired after 3 waits",
        "lost after 5 waits",
        "acquired after 10 waits",
    ]
    assert first.closed and not second.closed
    lost = [r for r in caplog.records if "event=lock_lost" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert "server closed the connection'" in lost[0].getMessage()  # first line only


def test_a_check_without_an_answer_counts_as_lost() -> None:
    release = threading.Event()

    class Hanging(Session):
        def check(self) -> None:
            release.wait(10)

    hung = Hanging([True], [])
    wait = Recorder(limit=3)
    lost = threading.Event()
    instance = Holder(
        "stasis-dnd",
        lambda: hung if not lost.is_set() else Session([False], []),
        on_acquired=lambda: None,
        on_lost=lost.set,
        check_timeout=0.05,
        fence=0,
        wait=wait,
    )
    instance.run()
    assert lost.is_set()
    assert not hung.closed  # not closed under its hanging query...
    release.set()
    _until(lambda: hung.closed)  # ...but once the query returns


def test_an_unreachable_database_is_warned_once_and_tried_every_poll(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "stasis_dnd")
    wait = Recorder(limit=6)
    refused = OSError("connection refused")
    holder([refused, refused, Session([True], [])], wait).run()
    assert wait.waits == [POLL, POLL, CHECK, CHECK, CHECK, CHECK]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "event=lock_db_unreachable" in warnings[0].getMessage()
    assert any("event=lock_db_reachable" in r.getMessage() for r in caplog.records)


def test_stop_closes_the_session_which_frees_the_lock() -> None:
    session = Session([True], [])
    acquired = threading.Event()
    instance = Holder(
        "stasis-dnd", lambda: session, on_acquired=acquired.set, on_lost=lambda: None, fence=0
    )
    instance.start()
    assert acquired.wait(10) and instance.holding
    instance.stop()
    assert session.closed


def _until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(500):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not met")
