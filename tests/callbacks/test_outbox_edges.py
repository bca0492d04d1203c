"""The SQLite outbox at its edges: the dedupe window's boundary and default,
what a new row holds, the raw file an administrator reads, default batch
sizes, opening where the path is odd, and each write naming itself when the
file takes no writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from stasis_dnd.callbacks.outbox import DUPLICATE, PENDING, Outbox, OutboxError

A = "+79000000001"


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox.open(str(tmp_path / "outbox.sqlite3"))


def test_a_repeat_half_a_second_inside_a_half_second_window_is_a_duplicate(
    outbox: Outbox,
) -> None:
    first = outbox.add(A, "c1", "r1", 100.0)
    repeat = outbox.add(A, "c2", "r2", 100.4, 0.5)
    assert (repeat.state, repeat.duplicate_of, repeat.finished_at) == (DUPLICATE, first.id, 100.4)


def test_without_a_window_every_request_is_new_and_not_finished(outbox: Outbox) -> None:
    outbox.add(A, "c1", "r1", 100.0)
    second = outbox.add(A, "c2", "r2", 100.0)
    assert (second.state, second.duplicate_of, second.finished_at) == (PENDING, None, None)


def test_a_missing_fact_reads_as_empty_text(outbox: Outbox) -> None:
    entry = outbox.add(A, "c1", "r1", 100.0, context=(("queue", "sales"),))
    assert (entry.fact("queue"), entry.fact("reason")) == ("sales", "")


def test_the_facts_are_readable_in_the_file_as_written(outbox: Outbox) -> None:
    outbox.add(A, "c1", "r1", 100.0, context=(("queue", "Продажи"),))
    with sqlite3.connect(outbox.path) as db:
        [(raw,)] = db.execute("SELECT context FROM requests").fetchall()
    assert raw == '{"queue": "Продажи"}'  # sqlite3 on the server shows it, not \u escapes


def test_due_and_entries_give_a_hundred_at_a_time_by_default(outbox: Outbox) -> None:
    for n in range(101):
        outbox.add(f"+7900{n:07d}", "c", f"r{n}", 100.0)
    assert len(outbox.due(200.0)) == 100
    assert len(outbox.entries()) == 100


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "stasis-dnd" / "outbox.sqlite3"
    Outbox.open(str(path)).close()
    assert path.is_file()


def test_a_file_where_a_directory_should_be_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("")
    with pytest.raises(OutboxError) as raised:
        Outbox.open(str(tmp_path / "var" / "outbox.sqlite3"))
    assert (
        str(raised.value)
        == f"cannot create the outbox directory {tmp_path / 'var'}: a file is in the way"
    )


def test_a_parent_below_a_file_says_the_system_s_reason(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("")
    parent = tmp_path / "var" / "lib"
    with pytest.raises(OutboxError) as raised:
        Outbox.open(str(parent / "outbox.sqlite3"))
    assert str(raised.value) == f"cannot create the outbox directory {parent}: Not a directory"


def test_a_directory_at_the_outbox_path_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite3").mkdir()
    with pytest.raises(OutboxError, match=r"^cannot open the outbox .*outbox\.sqlite3: "):
        Outbox.open(str(tmp_path / "outbox.sqlite3"))


WRITES: dict[str, Callable[[Outbox], object]] = {
    "claim a request": lambda o: o.claim(1, 100.0, 200.0),
    "record a failed attempt": lambda o: o.mark_failed(1, "HTTP 500", 200.0),
    "dead-letter old requests": lambda o: o.expire(10**6, 60.0),
    "retry the request": lambda o: o.retry(1, 200.0),
    "retry dead requests": lambda o: o.retry_dead(200.0),
    "purge old requests": lambda o: o.purge(200.0),
    "prune delivered requests": lambda o: o.prune_delivered(200.0),
}


@pytest.mark.parametrize("what", WRITES)
def test_a_write_to_a_read_only_file_says_what_it_could_not_do(outbox: Outbox, what: str) -> None:
    outbox.add(A, "c1", "r1", 100.0)
    outbox.pragma("query_only = 1")
    with pytest.raises(OutboxError) as raised:
        WRITES[what](outbox)
    assert str(raised.value).startswith(f"cannot {what} in {outbox.path}: ")
