"""The app with an election (`App(lock=...)`) against the fake Asterisk, in
this process: it connects only while it holds the lock, and a holder that
lost the lock while it waited for the app name does not take the name back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from stasis_dnd.runtime.app import App
from stasis_dnd.settings import AriSettings, Settings
from stasis_dnd.testing.fake_asterisk import FakeAsterisk

USER, PASSWORD, APP = "stasis-dnd", "ari-Secret-4711", "stasis-dnd"


class Lock:
    """One advisory lock: granted to one session while `available`."""

    def __init__(self) -> None:
        self.available = True
        self.owner: Session | None = None


class Session:
    def __init__(self, lock: Lock) -> None:
        self.lock = lock
        self.ended = False

    def try_lock(self) -> bool:
        if self.lock.available and self.lock.owner in (None, self):
            self.lock.owner = self
        return self.lock.owner is self

    def check(self) -> None:
        if self.ended:
            raise ConnectionError("terminating connection due to administrator command")

    def close(self) -> None:
        if self.lock.owner is self:
            self.lock.owner = None


class Store:
    def request(
        self, phone: str, channel_id: str, caller_id: str, context: tuple[tuple[str, str], ...] = ()
    ) -> tuple[bool, str, str]:
        return True, "stored", ""

    def stored_for_channel(self, channel_id: str) -> bool:
        return False


@pytest.fixture
def fake() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(USER, PASSWORD, APP) as server:
        yield server


@pytest.fixture
def apps(fake: FakeAsterisk, caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., App]]:
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    started: list[App] = []

    def start(lock: Lock | None) -> App:
        settings = Settings(
            ari=AriSettings(url=fake.url, username=USER, password=PASSWORD, app=APP)
        )
        app = App(settings, Store(), workers=2, lock=(lambda: Session(lock)) if lock else None)
        if app.holder is not None:
            holder = app.holder
            holder.poll, holder.check, holder.fence, holder.rejoin = 0.02, 0.02, 0.05, 0.05
        app.name_wait_base = app.name_wait_cap = app.name_confirm = 0.1
        app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        if not app._stop.is_set():
            app.stop()
            app.shutdown()


def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_holder_that_lost_the_lock_while_replaced_waits_for_the_lock_not_the_name(
    fake: FakeAsterisk, apps: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    lock = Lock()
    first = apps(lock)
    fake.wait_connected(20)
    # An instance without the shared database takes the name.
    other = apps(None)
    until(lambda: "event=app_replaced" in caplog.text, "replaced")
    # The first's lock session ends, and the lock stays taken meanwhile.
    lock.available = False
    assert isinstance(lock.owner, Session)
    lock.owner.ended = True
    until(lambda: "event=lock_lost" in caplog.text, "the lock lost")
    other.stop()
    other.shutdown()
    until(lambda: "event=app_name_free" in caplog.text, "the name free")
    for thread in threading.enumerate():
        if thread.name == "app-name-wait":
            thread.join(10)
    # The name is free, but without the lock the first does not connect.
    assert not fake.connected
    assert fake.counters()["ws_connections"] == 2
    lock.available = True
    until(lambda: caplog.text.count("event=holder") == 2, "the lock again")
    fake.wait_connected(20)
    assert fake.counters()["ws_connections"] == 3
    assert first.holder is not None and first.holder.holding
    assert first.metrics.lock_held._value.get() == 1


def test_a_standby_never_connects_and_stops_without_a_drain(
    fake: FakeAsterisk, apps: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    lock = Lock()
    lock.available = False
    standby = apps(lock)
    until(lambda: "event=standby" in caplog.text, "standing by")
    assert fake.counters().get("ws_connections", 0) == 0
    assert standby.metrics.lock_held._value.get() == 0
    standby.stop()
    standby.shutdown()
    assert "event=stopping calls=0 drain=none (standby)" in caplog.text
