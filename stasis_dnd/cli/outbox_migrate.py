"""`stasis-dnd outbox migrate --to postgresql://...`: copy the SQLite outbox
at `[outbox] path` into a shared PostgreSQL database, before `[outbox] url`
is set. Copied: pending and dead requests, and those delivered within the
dedupe window (so a caller who calls again right after the move is still
recognised as a repeat); duplicates are not (they are never sent). Keyed on
the request id: running it again copies nothing twice. The SQLite file is
left as it was.
"""

from __future__ import annotations

import argparse
import sys
import time

from stasis_dnd.callbacks.outbox import DEAD, DELIVERED, PENDING, Entry, Outbox, OutboxError
from stasis_dnd.callbacks.outbox_pg import PgOutbox
from stasis_dnd.cli.options import add_config
from stasis_dnd.config import _database_url
from stasis_dnd.settings import OutboxSettings

# Every row of a state: an outbox holds far fewer than this.
_ALL = 10**9
_BUSY_TIMEOUT = 10.0


def _url(text: str) -> str:
    try:
        return _database_url(text) or ""
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_migrate_command(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = actions.add_parser(
        "migrate",
        help="copy pending, dead and recently delivered requests into a PostgreSQL outbox",
    )
    add_config(migrate)
    migrate.add_argument(
        "--to",
        type=_url,
        required=True,
        metavar="URL",
        help="postgresql://user@host[:port]/database (password: [outbox] password,"
        " PGPASSWORD or ~/.pgpass)",
    )


def to_copy(source: Outbox, now: float, dedupe_window: float) -> list[Entry]:
    """What a move takes along, oldest first."""
    recent = [e for e in source.entries(DELIVERED, _ALL) if e.created_at >= now - dedupe_window]
    chosen = source.entries(PENDING, _ALL) + source.entries(DEAD, _ALL) + recent
    return sorted(chosen, key=lambda e: e.id)


def run_migrate(args: argparse.Namespace, outbox: OutboxSettings) -> int:
    try:
        source = Outbox.open(outbox.path, busy_timeout=_BUSY_TIMEOUT)
    except OutboxError as exc:
        print(f"stasis-dnd: {exc}", file=sys.stderr)
        return 1
    try:
        entries = to_copy(source, time.time(), outbox.dedupe_window)
        target = PgOutbox.open(args.to, password=outbox.password)
        try:
            copied = target.import_entries(entries)
        finally:
            target.close()
    except OutboxError as exc:
        print(f"stasis-dnd: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()
    print(f"Copied from {outbox.path} to {target.path}: {_summary(copied)}.")
    if len(copied) < len(entries):
        print(f"{len(entries) - len(copied)} request(s) were there already and were left alone.")
    print(
        f"The file {outbox.path} is left as it was. Stop the service, set [outbox] url,"
        " and start it: it then delivers from the database."
    )
    return 0


def _summary(copied: list[Entry]) -> str:
    by_state = {state: sum(e.state == state for e in copied) for state in (PENDING, DEAD)}
    delivered = sum(e.state == DELIVERED for e in copied)
    return (
        f"{by_state[PENDING]} pending, {by_state[DEAD]} dead and {delivered} recently"
        " delivered request(s)"
    )
