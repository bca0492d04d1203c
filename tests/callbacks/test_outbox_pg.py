"""What only the PostgreSQL outbox has: connection failures as one sentence
naming what to fix (never the password), a server restart survived, the
versioned schema, and the dedupe window held across instances."""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import replace

import psycopg
import pytest

from stasis_dnd.callbacks.outbox import DUPLICATE, PENDING, OutboxError
from stasis_dnd.callbacks.outbox_pg import PgOutbox
from stasis_dnd.callbacks.outbox_pg_schema import SCHEMA_VERSION, schema_version
from stasis_dnd.callbacks.pg import INSTALL_HINT, connect_settings, safe_url
from stasis_dnd.callbacks.store import OutboxStore, describe, open_outbox
from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.pg_fixtures import POSTGRES_PASSWORD
from stasis_dnd.testing.postgres import TempPostgres, free_port

T0 = 1_700_000_000.0
WINDOW = 1800.0
A = "+79000000001"


def one_sentence(error: pytest.ExceptionInfo[OutboxError]) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    assert POSTGRES_PASSWORD not in text and "wrong-pw" not in text
    return text


def test_the_password_from_the_settings_opens_a_url_without_one(
    postgres_outbox: OutboxSettings,
) -> None:
    store = open_outbox(postgres_outbox)
    assert isinstance(store, PgOutbox)
    assert store.add(A, "c1", "r1", T0).state == PENDING
    store.close()


def test_a_wrong_or_missing_password_names_the_password_to_fix(
    postgres_outbox: OutboxSettings,
) -> None:
    for password in ("wrong-pw", ""):
        with pytest.raises(OutboxError) as caught:
            open_outbox(replace(postgres_outbox, password=password))
        assert one_sentence(caught) == (
            f"the database server refused the login for {describe(postgres_outbox)}:"
            " check the user and [outbox] password (or password_file)"
        )


def test_a_missing_database_or_user_is_named(postgres: TempPostgres) -> None:
    base = postgres.url.rpartition("/")[0]
    with pytest.raises(OutboxError) as caught:
        PgOutbox.open(base + "/nowhere", password=POSTGRES_PASSWORD)
    assert one_sentence(caught).startswith(f"the database of {base}/nowhere does not exist:")
    stranger = base.replace("stasis@", "stranger@") + "/postgres"
    with pytest.raises(OutboxError) as caught:
        PgOutbox.open(stranger, password=POSTGRES_PASSWORD)
    # The server does not tell a stranger from a wrong password.
    assert "refused the login" in one_sentence(caught)


def test_an_unreachable_server_says_where_it_looked() -> None:
    url = f"postgresql://stasis@127.0.0.1:{free_port()}/outbox"
    with pytest.raises(OutboxError) as caught:
        PgOutbox.open(url, password="wrong-pw")
    assert one_sentence(caught).startswith(
        f"cannot reach the database server of {url}: is PostgreSQL running"
    )


def test_without_psycopg_the_error_says_what_to_install(
    postgres_outbox: OutboxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    with pytest.raises(OutboxError) as caught:
        open_outbox(postgres_outbox)
    assert one_sentence(caught) == f"[outbox] url is set but psycopg is missing: {INSTALL_HINT}"
    assert "python3-psycopg" in INSTALL_HINT and "stasis-dnd[postgresql]" in INSTALL_HINT


def test_the_logged_address_has_no_password() -> None:
    assert safe_url("postgresql://dnd:s3cret@db.example:5433/calls") == (
        "postgresql://dnd@db.example:5433/calls"
    )
    assert safe_url("postgresql://db.example/calls?password=s3cret&sslmode=require") == (
        "postgresql://db.example/calls"
    )
    assert "s3cret" not in describe(OutboxSettings(url="postgresql://u:s3cret@h/d"))


def test_a_server_restart_costs_one_failed_call_at_most(
    postgres: TempPostgres, postgres_outbox: OutboxSettings
) -> None:
    store = open_outbox(postgres_outbox)
    first = store.add(A, "c1", "r1", T0)
    postgres.stop()
    try:
        with pytest.raises(OutboxError) as caught:
            store.add(A, "c2", "r2", T0 + 1)
        assert one_sentence(caught).startswith(f"cannot reach the database server of {store.path}")
    finally:
        postgres.start()
    # The dropped connection is made again: nothing to restart in the app.
    assert store.get(first.id) == first
    assert store.add("+79000000002", "c3", "r3", T0 + 2).state == PENDING
    postgres.stop("immediate")  # a crash: the idle connection dies unnoticed
    postgres.start()
    assert store.counts()[PENDING] == 2
    store.close()


def test_the_schema_is_made_once_and_versioned(postgres_outbox: OutboxSettings) -> None:
    opened: list[PgOutbox] = []
    errors: list[Exception] = []

    def open_one() -> None:
        try:
            opened.append(PgOutbox.open(postgres_outbox.url, password=POSTGRES_PASSWORD))
        except Exception as exc:
            errors.append(exc)

    # Instances starting at once on an empty database.
    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for store in opened:
        store.close()
    with psycopg.connect(postgres_outbox.url, password=POSTGRES_PASSWORD) as db:
        assert schema_version(db) == SCHEMA_VERSION == 1
        assert db.execute("SELECT count(*) FROM stasis_dnd_schema").fetchone() == (1,)


def test_a_schema_newer_than_this_version_is_refused(postgres_outbox: OutboxSettings) -> None:
    open_outbox(postgres_outbox).close()
    with psycopg.connect(postgres_outbox.url, password=POSTGRES_PASSWORD) as db:
        db.execute("UPDATE stasis_dnd_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(OutboxError) as caught:
        open_outbox(postgres_outbox)
    assert one_sentence(caught) == (
        f"the outbox schema is version {SCHEMA_VERSION + 1}, newer than this stasis-dnd"
        f" ({SCHEMA_VERSION}): upgrade stasis-dnd"
    )


def test_an_add_repeated_with_its_request_id_stores_it_once(
    postgres_outbox: OutboxSettings,
) -> None:
    # What a retry after a commit whose answer was lost does.
    store = open_outbox(postgres_outbox)
    first = store.add(A, "c1", "r1", T0, WINDOW)
    assert store.add(A, "c1", "r1", T0, WINDOW) == first
    assert store.counts()[PENDING] == 1
    store.close()


def stored_at_once(stores: list[OutboxStore], number: str) -> list[str]:
    """Each store adds a request for `number` at the same moment; their states."""
    start = threading.Barrier(len(stores))
    states: list[str] = []

    def store_it(n: int) -> None:
        start.wait()
        states.append(stores[n].add(number, f"c{n}", f"{number}-{n}", T0, WINDOW).state)

    threads = [threading.Thread(target=store_it, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(states)


def test_the_same_number_stored_at_once_by_several_instances_is_stored_once(
    postgres_outbox: OutboxSettings,
) -> None:
    stores = [open_outbox(postgres_outbox) for _ in range(6)]
    for round_ in range(5):
        states = stored_at_once(stores, f"+7900000010{round_}")
        assert states == [DUPLICATE] * (len(stores) - 1) + [PENDING]
    assert stores[0].counts()[PENDING] == 5
    for store in stores:
        store.close()


def test_a_server_that_accepts_but_never_answers_fails_the_open_in_bounded_time() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://stasis@127.0.0.1:{silent.getsockname()[1]}/outbox"
        with pytest.raises(OutboxError) as caught:
            PgOutbox.open(url, password="wrong-pw")  # libpq's connect_timeout ends it
    assert one_sentence(caught).startswith(f"cannot reach the database server of {url}")


def test_a_row_locked_elsewhere_fails_after_the_lock_timeout(
    postgres_outbox: OutboxSettings,
) -> None:
    store = open_outbox(postgres_outbox)
    entry = store.add(A, "c1", "r1", T0)
    with psycopg.connect(postgres_outbox.url, password=POSTGRES_PASSWORD) as other:
        # Another session holds the row, and never lets go (a hung client).
        other.execute("SELECT 1 FROM stasis_dnd_requests WHERE id = %s FOR UPDATE", (entry.id,))
        with pytest.raises(OutboxError) as caught:
            store.mark_delivered(entry.id, T0 + 1)
        assert "lock timeout" in one_sentence(caught)
        # A claim skips the locked row instead of waiting for it.
        assert store.claim(entry.id, entry.next_attempt_at, T0 + 20) is False
        other.rollback()
    assert store.claim(entry.id, entry.next_attempt_at, T0 + 20)
    store.close()


def test_the_urls_own_options_are_kept_a_schema_of_its_own(
    postgres_outbox: OutboxSettings,
) -> None:
    with psycopg.connect(postgres_outbox.url, password=POSTGRES_PASSWORD) as db:
        db.execute("CREATE SCHEMA calls")
    url = postgres_outbox.url + "?options=-csearch_path%3Dcalls&application_name=dnd-a"
    store = open_outbox(replace(postgres_outbox, url=url))
    store.add(A, "c1", "r1", T0)
    store.close()
    with psycopg.connect(postgres_outbox.url, password=POSTGRES_PASSWORD) as db:
        found = db.execute("SELECT to_regclass('calls.stasis_dnd_requests') IS NOT NULL")
        assert found.fetchone() == (True,)
        assert db.execute("SELECT count(*) FROM calls.stasis_dnd_requests").fetchone() == (1,)


def test_a_connection_for_others_has_the_timeouts_or_none_when_it_waits(
    postgres_outbox: OutboxSettings,
) -> None:
    with connect_settings(postgres_outbox) as db:
        assert db.autocommit
        assert db.execute("SHOW statement_timeout").fetchone() == ("10s",)
        assert db.execute("SHOW lock_timeout").fetchone() == ("2s",)
    with connect_settings(postgres_outbox, waiting=True) as db:
        assert db.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert db.execute("SHOW lock_timeout").fetchone() == ("0",)
