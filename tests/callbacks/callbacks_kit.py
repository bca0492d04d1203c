"""Shared by the callback-service tests: a fake clock, a jitter that always
takes the ceiling, and services on a temporary outbox filing with the CRM
emulator."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.callbacks.outbox import Entry, Outbox
from stasis_dnd.callbacks.store import OutboxStore, open_outbox
from stasis_dnd.settings import CrmSettings, OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator

PASSWORD = "Kx9#secret-pw"
A, B, C = "+79000000001", "+79000000002", "+79000000003"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class CeilingJitter(random.Random):
    """`uniform(a, b)` is always `b`: back-off delays become exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def sqlite_outbox(service: CallbackService) -> Outbox:
    """The service's outbox, which these tests open as the SQLite file."""
    assert isinstance(service.outbox, Outbox)
    return service.outbox


class Services:
    """Makes callback services on one outbox; `stop_all()` at the end."""

    def __init__(
        self,
        crm: CrmEmulator,
        folder: Path,
        clock: Callable[[], float],
        outbox: OutboxSettings | None = None,
    ) -> None:
        self.crm = crm
        self.path = str(folder / "var" / "outbox.sqlite3")
        self.clock = clock
        # The outbox the services share: the SQLite file at `path` unless given.
        self.outbox = outbox or OutboxSettings(path=self.path)
        self._made: list[CallbackService] = []

    def __call__(
        self,
        *,
        deliver: bool = False,
        dedupe_window: float = 1800.0,
        max_age: float = 86400.0,
        keep: float = 30 * 86400.0,
        rng: random.Random | None = None,
        poll_interval: float = 5.0,
        write_timeout: float = 2.0,
        context_params: tuple[tuple[str, str], ...] = (),
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> CallbackService:
        """A started service; `profiles`: name -> the [crm] fields it changes."""
        crm = CrmSettings(
            url=self.crm.url,
            username="dnd",
            password=PASSWORD,
            timeout=2.0,
            context_params=context_params,
        )
        service = CallbackService(
            crm,
            dataclasses.replace(
                self.outbox,
                max_age=max_age,
                dedupe_window=dedupe_window,
                keep=keep,
                write_timeout=write_timeout,
            ),
            clock=self.clock,
            rng=rng or random.Random(7),
            poll_interval=poll_interval,
            profiles={
                name: dataclasses.replace(crm, **changes)
                for name, changes in (profiles or {}).items()
            },
        )
        service.start(deliver=deliver)
        self._made.append(service)
        return service

    def stop_all(self) -> None:
        for service in self._made:
            service.stop(timeout=10)


class Backend:
    """One outbox backend under test: `open()` gives another connection to
    the same store (another process, or the same one after a restart)."""

    def __init__(self, name: str, settings: OutboxSettings) -> None:
        self.name = name
        self.settings = settings
        self._opened: list[OutboxStore] = []

    def open(self) -> OutboxStore:
        store = open_outbox(self.settings)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


def hang_writes(service: CallbackService) -> threading.Event:
    """Make the outbox's writes of new requests block until the returned event is set."""
    outbox = service.outbox
    assert outbox is not None
    release = threading.Event()
    real_add = outbox.add

    def add(*args: Any, **kwargs: Any) -> Entry:
        release.wait(30)
        return real_add(*args, **kwargs)

    outbox.add = add  # type: ignore[method-assign]
    return release
