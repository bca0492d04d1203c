"""Group commit: requests that queue up while the outbox writes one (a slow
fsync) are written together, in one transaction and one fsync, and each
caller is answered only once that commit is done; a failed request in the
group is undone alone, a failed commit fails them all (they go to the CRM
directly, as any request the outbox could not store)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from callbacks_kit import Backend, Services, sqlite_outbox, wait_until

from stasis_dnd.callbacks.intake import SENT, STORED, CallbackService, RequestResult
from stasis_dnd.callbacks.outbox import DUPLICATE, PENDING, Entry, Outbox, OutboxError

T0 = 1_700_000_000.0


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox.open(str(tmp_path / "outbox.sqlite3"))
    yield outbox
    outbox.close()


def committed(path: str) -> list[str]:
    """The request ids another connection sees: only what was committed."""
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT request_id FROM requests ORDER BY id")]
    finally:
        db.close()


def count_commits(outbox: Outbox) -> list[str]:
    commits: list[str] = []
    outbox._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return commits


def test_adds_inside_a_group_share_one_commit_made_on_leaving(box: Outbox) -> None:
    commits = count_commits(box)
    with box.group_commit():
        entries = [box.add(f"+7900000000{n}", f"c{n}", f"r{n}", T0) for n in range(3)]
        assert committed(box.path) == []  # nothing is on disk before the commit
    assert commits == ["COMMIT"]
    assert committed(box.path) == ["r0", "r1", "r2"]
    assert [entry.state for entry in entries] == [PENDING] * 3


def test_a_repeat_inside_a_group_is_a_duplicate_of_the_first(box: Outbox) -> None:
    with box.group_commit():
        first = box.add("+79000000001", "c1", "r1", T0, 1800.0)
        again = box.add("+79000000001", "c2", "r2", T0 + 1, 1800.0)
    assert (again.state, again.duplicate_of) == (DUPLICATE, first.id)


def test_a_failed_add_inside_a_group_is_undone_alone(box: Outbox) -> None:
    with box.group_commit():
        box.add("+79000000001", "c1", "r1", T0)
        # A lone surrogate cannot be stored as UTF-8.
        with pytest.raises(OutboxError, match=r"^cannot store the request in "):
            box.add("+7900\ud800", "c2", "r2", T0)
        box.add("+79000000003", "c3", "r3", T0)
    assert committed(box.path) == ["r1", "r3"]


def test_a_group_left_by_an_error_stores_none_of_its_adds(box: Outbox) -> None:
    with pytest.raises(RuntimeError), box.group_commit():
        box.add("+79000000001", "c1", "r1", T0)
        raise RuntimeError("before the commit")
    assert committed(box.path) == []
    box.add("+79000000002", "c2", "r2", T0)  # the connection is usable again
    assert committed(box.path) == ["r2"]


def test_another_thread_waits_for_the_group_to_commit(box: Outbox) -> None:
    seen: list[list[str]] = []
    with box.group_commit():
        box.add("+79000000001", "c1", "r1", T0)
        reader = threading.Thread(target=lambda: seen.append([e.request_id for e in box.due(T0)]))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()  # the connection is the group's until it commits
    reader.join(10)
    assert seen == [["r1"]]


# --- the service's writer ----------------------------------------------------


def hold_first_add(outbox: Outbox) -> tuple[threading.Event, threading.Event]:
    """The first add waits (a slow fsync) until released; (started, release)."""
    started, release = threading.Event(), threading.Event()
    real_add = outbox.add

    def add(*args: Any, **kwargs: Any) -> Entry:
        if not started.is_set():
            started.set()
            release.wait(30)
        return real_add(*args, **kwargs)

    outbox.add = add  # type: ignore[method-assign]
    return started, release


def ask(service: CallbackService, n: int, results: dict[int, tuple[RequestResult, bool]]) -> None:
    """One caller's request; whether its row was committed when it was answered."""
    result = service.request(f"+7900000010{n}", f"chan-{n}", "")
    assert service.outbox is not None
    results[n] = (result, any(f"chan-{n}" in row for row in channels(service.outbox.path)))


def channels(path: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT channel_id FROM requests")]
    finally:
        db.close()


def queue_behind_a_slow_write(service: CallbackService, waiting: int) -> dict[int, Any]:
    """One request held in its write, `waiting` more queued behind it; then released."""
    outbox = sqlite_outbox(service)
    started, release = hold_first_add(outbox)
    results: dict[int, tuple[RequestResult, bool]] = {}
    threads = [threading.Thread(target=ask, args=(service, 0, results))]
    threads[0].start()
    assert started.wait(10)
    for n in range(1, waiting + 1):
        threads.append(threading.Thread(target=ask, args=(service, n, results)))
        threads[-1].start()
    writer = service._writer
    assert writer is not None
    wait_until(lambda: writer._jobs.qsize() == waiting)
    release.set()
    for thread in threads:
        thread.join(30)
    return results


def test_requests_queued_behind_a_slow_write_share_the_next_commit(
    make: Services, fresh_crm: None
) -> None:
    service = make(write_timeout=10.0)
    outbox = sqlite_outbox(service)
    commits = count_commits(outbox)
    results = queue_behind_a_slow_write(service, waiting=5)
    try:
        assert commits == ["COMMIT", "COMMIT"]  # the held one, then the five together
    finally:
        outbox._db.set_trace_callback(None)
    assert sorted(results) == list(range(6))
    for result, on_disk in results.values():
        assert result.result == STORED
        assert on_disk  # committed before the caller was answered
    assert len(channels(outbox.path)) == 6


def test_a_group_whose_commit_fails_sends_each_of_its_requests_directly(
    make: Services, fresh_crm: None
) -> None:
    service = make(write_timeout=10.0)
    outbox = sqlite_outbox(service)
    real_group = outbox.group_commit

    @contextmanager
    def failing_group() -> Iterator[None]:
        with real_group():
            yield
            raise OutboxError("cannot store the requests in the outbox: disk I/O error")

    outbox.group_commit = failing_group  # type: ignore[method-assign]
    assert service._writer is not None
    service._writer._group = failing_group
    results = queue_behind_a_slow_write(service, waiting=3)
    assert results[0][0].result == STORED  # alone, in its own transaction
    for n in (1, 2, 3):
        result, on_disk = results[n]
        assert (result.ok, result.result, on_disk) == (True, SENT, False)
    assert len(make.crm.requests) == 3
    assert channels(outbox.path) == ["chan-0"]


def test_each_backend_stores_the_adds_made_in_a_group(backend: Backend) -> None:
    store = backend.open()
    with store.group_commit():
        store.add("+79000000001", "c1", "r1", T0)
        store.add("+79000000002", "c2", "r2", T0)
    other = backend.open()  # another process
    assert sorted(entry.request_id for entry in other.entries()) == ["r1", "r2"]
