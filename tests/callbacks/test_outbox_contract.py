"""The outbox contract, on both backends (the SQLite file and a PostgreSQL
database): durable, ordered, deduplicating per number and profile, claims
with a lease, dead letters, keep/prune, and every failure one OutboxError."""

from __future__ import annotations

import pytest
from callbacks_kit import Backend

from stasis_dnd.callbacks.outbox import DEAD, DELIVERED, DUPLICATE, PENDING, OutboxError
from stasis_dnd.callbacks.store import OutboxStore

T0 = 1_700_000_000.0
WINDOW = 1800.0
A, B, C = "+79000000001", "+79000000002", "+79000000003"


@pytest.fixture
def box(backend: Backend) -> OutboxStore:
    return backend.open()


def test_requests_survive_reopening_and_come_out_in_order(backend: Backend) -> None:
    outbox = backend.open()
    for n in range(3):
        outbox.add(f"+7900000000{n}", f"chan-{n}", f"req-{n}", T0 + n)
    outbox.close()  # as good as a crash: every add was committed
    due = backend.open().due(T0 + 10)
    assert [e.request_id for e in due] == ["req-0", "req-1", "req-2"]
    assert [e.state for e in due] == [PENDING] * 3
    assert (due[0].phone, due[0].channel_id, due[0].created_at) == ("+79000000000", "chan-0", T0)


def test_an_add_is_visible_to_another_connection_at_once(backend: Backend) -> None:
    writer, reader = backend.open(), backend.open()
    stored = writer.add(A, "chan-1", "r1", T0)
    assert reader.get(stored.id) == stored


def test_delivered_and_failed_attempts(box: OutboxStore) -> None:
    first = box.add("1", "c1", "r1", T0)
    second = box.add("2", "c2", "r2", T0)
    box.mark_failed(first.id, "failed: HTTP 500", T0 + 60)
    box.mark_delivered(second.id, T0 + 1)
    assert box.due(T0 + 59) == []
    [again] = box.due(T0 + 60)
    assert (again.attempts, again.last_error) == (1, "failed: HTTP 500")
    done = box.get(second.id)
    assert done is not None and (done.state, done.finished_at) == (DELIVERED, T0 + 1)
    assert box.next_due() == T0 + 60
    assert box.counts() == {PENDING: 1, DELIVERED: 1, DEAD: 0, DUPLICATE: 0}


def test_next_due_is_none_with_nothing_pending(box: OutboxStore) -> None:
    assert box.next_due() is None
    box.mark_delivered(box.add("1", "c1", "r1", T0).id, T0)
    assert box.next_due() is None


def test_a_request_planned_beyond_max_wait_is_due_the_clock_went_back(box: OutboxStore) -> None:
    entry = box.add("1", "c1", "r1", T0)
    box.mark_failed(entry.id, "failed: HTTP 500", T0 + 3600)
    assert box.due(T0, max_wait=3600) == []
    assert [e.id for e in box.due(T0 - 1, max_wait=3600)] == [entry.id]


def test_same_number_within_the_window_is_a_duplicate(box: OutboxStore) -> None:
    first = box.add(A, "c1", "r1", T0, WINDOW)
    second = box.add(A, "c2", "r2", T0 + 60, WINDOW)
    other = box.add(C, "c3", "r3", T0 + 60, WINDOW)
    assert (first.state, second.state, other.state) == (PENDING, DUPLICATE, PENDING)
    assert (second.duplicate_of, second.finished_at) == (first.id, T0 + 60)
    assert [e.request_id for e in box.due(T0 + 100)] == ["r1", "r3"]
    # A recently delivered request still counts.
    box.mark_delivered(first.id, T0 + 70)
    assert box.add(A, "c4", "r4", T0 + 120, WINDOW).state == DUPLICATE
    # The window's edge counts from the first request: in at WINDOW, out just past it.
    assert box.add(A, "c5", "r5", T0 + WINDOW, WINDOW).state == DUPLICATE
    assert box.add(A, "c6", "r6", T0 + WINDOW + 1, WINDOW).state == PENDING


def test_a_repeat_is_one_within_the_same_profile(box: OutboxStore) -> None:
    sales = box.add(A, "c1", "r1", T0, WINDOW, context=(("profile", "sales"),))
    support = box.add(A, "c2", "r2", T0 + 1, WINDOW, context=(("profile", "support"),))
    assert (sales.state, support.state) == (PENDING, PENDING)
    again = box.add(A, "c3", "r3", T0 + 2, WINDOW, context=(("profile", "sales"),))
    assert (again.state, again.duplicate_of) == (DUPLICATE, sales.id)
    # No profile fact is the default profile, by name too.
    plain = box.add(A, "c4", "r4", T0 + 3, WINDOW)
    named = box.add(A, "c5", "r5", T0 + 4, WINDOW, context=(("profile", "default"),))
    assert (plain.state, named.state, named.duplicate_of) == (PENDING, DUPLICATE, plain.id)


def test_window_zero_turns_deduplication_off(box: OutboxStore) -> None:
    box.add(A, "c1", "r1", T0, 0)
    assert box.add(A, "c2", "r2", T0 + 1, 0).state == PENDING


def test_dead_requests_and_empty_numbers_are_not_duplicated(box: OutboxStore) -> None:
    first = box.add(A, "c1", "r1", T0, WINDOW)
    box.expire(T0 + 10, max_age=5)
    assert box.get(first.id).state == DEAD  # type: ignore[union-attr]
    assert box.add(A, "c2", "r2", T0 + 11, WINDOW).state == PENDING
    box.add("", "c3", "r3", T0, WINDOW)
    assert box.add("", "c4", "r4", T0, WINDOW).state == PENDING


def test_the_caller_id_and_the_facts_are_kept(backend: Backend) -> None:
    box = backend.open()
    facts = (("queue", "998"), ("profile", "sales"), ("name", "Иван"))
    keyed_in = box.add(A, "chan-1", "r1", T0, caller_id=B, context=facts)
    own = box.add(C, "chan-2", "r2", T0 + 1)
    assert (keyed_in.caller_id, keyed_in.context, keyed_in.fact("name")) == (B, facts, "Иван")
    assert (own.caller_id, own.context) == ("", ())
    reopened = backend.open()
    assert [(e.caller_id, e.context) for e in reopened.due(T0 + 10)] == [(B, facts), ("", ())]


def test_the_same_number_from_another_caller_is_a_duplicate(box: OutboxStore) -> None:
    first = box.add(A, "chan-1", "r1", T0, WINDOW, caller_id=B)
    repeat = box.add(A, "chan-2", "r2", T0 + WINDOW, WINDOW, caller_id=C)
    other = box.add(C, "chan-3", "r3", T0 + 1, WINDOW, caller_id=B)
    # The caller's own number, called back at itself: not the number A was for.
    own = box.add(B, "chan-4", "r4", T0 + 2, WINDOW)
    assert (repeat.state, repeat.duplicate_of, repeat.caller_id) == (DUPLICATE, first.id, C)
    assert (other.state, other.duplicate_of) == (PENDING, None)
    assert (own.state, own.duplicate_of) == (PENDING, None)


def test_a_claim_is_taken_once_and_holds_the_request_for_its_lease(backend: Backend) -> None:
    box, other = backend.open(), backend.open()
    entry = box.add(A, "c1", "r1", T0)
    [seen] = other.due(T0)  # both instances read it as due ...
    assert box.claim(entry.id, entry.next_attempt_at, T0 + 20)
    assert other.claim(seen.id, seen.next_attempt_at, T0 + 20) is False  # ... one takes it
    assert box.due(T0 + 19) == []
    assert box.next_due() == T0 + 20
    # The claimer died: once the lease ran out another instance takes it.
    [back] = other.due(T0 + 20)
    assert other.claim(back.id, back.next_attempt_at, T0 + 40)
    box.mark_delivered(entry.id, T0 + 21)
    finished = other.get(entry.id)
    assert finished is not None and (finished.state, finished.attempts) == (DELIVERED, 1)


def test_no_claim_on_a_finished_or_missing_request(box: OutboxStore) -> None:
    entry = box.add(A, "c1", "r1", T0)
    box.mark_delivered(entry.id, T0)
    assert box.claim(entry.id, entry.next_attempt_at, T0 + 20) is False
    assert box.claim(999, T0, T0 + 20) is False
    # Marking a finished request again changes nothing.
    box.mark_failed(entry.id, "late", T0 + 99)
    box.mark_delivered(entry.id, T0 + 5)
    again = box.get(entry.id)
    assert again is not None
    assert (again.attempts, again.finished_at, again.last_error) == (1, T0, "")


def test_expire_dead_letters_with_the_last_error(box: OutboxStore) -> None:
    old = box.add("1", "c1", "r1", T0)
    young = box.add("2", "c2", "r2", T0 + 3600)
    untried = box.add("3", "c3", "r3", T0)
    box.mark_failed(old.id, "unavailable: Connection refused", T0)
    dead = box.expire(T0 + 86400 + 1, max_age=86400)
    assert [(e.id, e.state, e.last_error, e.finished_at) for e in dead] == [
        (old.id, DEAD, "unavailable: Connection refused", T0 + 86401),
        (untried.id, DEAD, "never attempted", T0 + 86401),
    ]
    assert box.get(old.id) == dead[0]
    assert box.get(young.id).state == PENDING  # type: ignore[union-attr]
    assert box.expire(T0 + 86400 + 2, max_age=86400) == []


def test_expire_spares_requests_short_of_the_minimum_attempts(box: OutboxStore) -> None:
    tried = box.add("1", "c1", "r1", T0)
    short = box.add("2", "c2", "r2", T0)
    for _ in range(3):
        box.mark_failed(tried.id, "failed: HTTP 500", T0)
    for _ in range(2):
        box.mark_failed(short.id, "failed: HTTP 500", T0)
    # The CRM unreachable: the error is noted, the attempt is not counted.
    box.mark_failed(short.id, "unavailable: Connection refused", T0 + 5, counted=False)
    noted = box.get(short.id)
    assert noted is not None
    assert (noted.attempts, noted.last_error, noted.next_attempt_at) == (
        2,
        "unavailable: Connection refused",
        T0 + 5,
    )
    dead = box.expire(T0 + 86400 + 1, max_age=86400, min_attempts=3)
    assert [(e.id, e.attempts) for e in dead] == [(tried.id, 3)]
    assert box.get(short.id).state == PENDING  # type: ignore[union-attr]
    box.mark_failed(short.id, "failed: HTTP 500", T0)
    assert [e.id for e in box.expire(T0 + 86400 + 1, max_age=86400, min_attempts=3)] == [short.id]


def test_retry_gives_a_dead_request_a_fresh_age(box: OutboxStore) -> None:
    entry = box.add("1", "c1", "r1", T0)
    box.mark_failed(entry.id, "unavailable: HTTP 503", T0)
    box.expire(T0 + 100, max_age=50)
    again = box.retry(entry.id, T0 + 200)
    assert (again.state, again.attempts, again.next_attempt_at) == (PENDING, 0, T0 + 200)
    assert (again.request_id, again.finished_at) == ("r1", None)  # the CRM can still recognise it
    assert box.expire(T0 + 250, max_age=50) == []
    assert [e.id for e in box.expire(T0 + 251, max_age=50)] == [entry.id]
    assert box.retry_dead(T0 + 300) == 1
    assert box.counts()[PENDING] == 1
    assert box.retry_dead(T0 + 301) == 0


def test_retry_refuses_unknown_and_delivered_requests(box: OutboxStore) -> None:
    entry = box.add("1", "c1", "r1", T0)
    box.mark_delivered(entry.id, T0)
    with pytest.raises(OutboxError, match=f"^request {entry.id} is delivered; only dead"):
        box.retry(entry.id, T0)
    with pytest.raises(OutboxError, match=r"^there is no request 999 in the outbox$"):
        box.retry(999, T0)


def test_purge_never_deletes_pending_requests(box: OutboxStore) -> None:
    waiting = box.add("1", "c1", "r1", T0)
    done = box.add("2", "c2", "r2", T0)
    repeat = box.add("2", "c3", "r3", T0 + 1, WINDOW)
    recent = box.add("3", "c4", "r4", T0 + 5000)
    box.mark_delivered(done.id, T0)
    box.mark_delivered(recent.id, T0 + 5000)
    assert box.purge(before=T0 + 4000) == 2
    assert [e.id for e in box.entries()] == [waiting.id, recent.id]
    assert repeat.state == DUPLICATE


def test_prune_deletes_only_delivered_and_duplicate_requests_finished_before(
    box: OutboxStore,
) -> None:
    old = box.add("1", "c1", "r1", T0)
    repeat = box.add("1", "c2", "r2", T0 + 1, WINDOW)  # finished when stored
    late = box.add("2", "c3", "r3", T0)  # created as early, delivered later
    waiting = box.add("3", "c4", "r4", T0)
    dead = box.add("4", "c5", "r5", T0)
    box.mark_delivered(old.id, T0 + 10)
    box.mark_delivered(late.id, T0 + 5000)
    box.expire(T0 + 20, max_age=5)  # dead-letters c4 and c5, both pending till now
    box.retry(waiting.id, T0 + 30)
    assert box.prune_delivered(before=T0 + 4000) == 2
    assert [e.id for e in box.entries()] == [late.id, waiting.id, dead.id]
    assert box.get(repeat.id) is None
    assert box.get(dead.id).state == DEAD  # type: ignore[union-attr]
    # Long after: pending and dead requests are never pruned.
    assert box.prune_delivered(before=T0 + 10**9) == 1
    assert [(e.id, e.state) for e in box.entries()] == [(waiting.id, PENDING), (dead.id, DEAD)]


def test_entries_newest_n_oldest_first_and_by_state(box: OutboxStore) -> None:
    ids = [box.add(str(n), f"c{n}", f"r{n}", T0 + n).id for n in range(5)]
    box.mark_delivered(ids[1], T0)
    assert [e.id for e in box.entries(limit=3)] == ids[2:]
    assert [e.id for e in box.entries(DELIVERED)] == [ids[1]]
    assert [e.id for e in box.due(T0 + 10, limit=2)] == [ids[0], ids[2]]


def test_has_channel(box: OutboxStore) -> None:
    box.add("1", "1700000000.42", "r1", T0)
    assert box.has_channel("1700000000.42")
    assert not box.has_channel("1700000000.43")


def test_use_after_close_is_an_outbox_error(backend: Backend) -> None:
    outbox = backend.open()
    outbox.close()
    with pytest.raises(OutboxError):
        outbox.add("1", "c1", "r1", T0)
    with pytest.raises(OutboxError):
        outbox.has_channel("c1")


def test_unstorable_text_is_an_outbox_error_that_stores_nothing(box: OutboxStore) -> None:
    with pytest.raises(OutboxError, match=r"^cannot store the request in .*surrogate"):
        box.add("\ud800", "c1", "r1", T0)
    assert box.counts()[PENDING] == 0
    box.add("1", "c1", "r1", T0)  # the connection is fine after it
