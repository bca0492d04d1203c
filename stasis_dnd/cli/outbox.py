"""The `stasis-dnd outbox` commands: look at, retry and purge stored callback
requests, also while the service runs (SQLite locks, or PostgreSQL's
transactions when `[outbox] url` is set, keep both consistent), and copy a
SQLite outbox into the shared database.

    stasis-dnd outbox list [--state pending|delivered|dead|duplicate] [--queue NAME]
                           [--profile NAME] [--limit N]
    stasis-dnd outbox retry ID | --dead
    stasis-dnd outbox purge --older-than 7d
    stasis-dnd outbox migrate --to postgresql://user@host/database

Output is a plain table with the number to call (the operator may have to
call back by hand), the caller's own number when they keyed in another one
(a CALLER_ID column, shown when a listed request has one), the queue the
caller waited in and for how long (QUEUE, WAITED: from the dialplan's
Stasis() arguments, shown when a listed request has them), the profile that
served the call (PROFILE, shown when a listed request is not the default
profile's), and never a credential.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import unicodedata
from pathlib import Path

from stasis_dnd.callbacks.outbox import (
    DEAD,
    DELIVERED,
    DUPLICATE,
    STATES,
    Entry,
    OutboxError,
)
from stasis_dnd.callbacks.store import OutboxStore, is_shared, open_outbox
from stasis_dnd.cli.options import add_config
from stasis_dnd.cli.outbox_migrate import add_migrate_command, run_migrate
from stasis_dnd.config import parse_duration
from stasis_dnd.settings import DEFAULT_PROFILE, OutboxSettings

# The operator's command may wait for the service's write to finish.
_BUSY_TIMEOUT = 10.0
_NOTE_WIDTH = 60


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_outbox_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `outbox list|retry|purge` (each with --config) to the CLI."""
    outbox = subparsers.add_parser(
        "outbox", help="list, retry or purge the callback requests stored for the CRM"
    )
    actions = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="show stored requests, oldest first")
    add_config(listing)
    listing.add_argument("--state", choices=STATES, help="only requests in this state")
    listing.add_argument("--queue", metavar="NAME", help="only requests from this queue")
    listing.add_argument(
        "--profile", metavar="NAME", help="only requests of this profile (default: [ivr]/[crm])"
    )
    listing.add_argument(
        "--limit", type=int, default=100, metavar="N", help="the newest N (default 100)"
    )

    retry = actions.add_parser(
        "retry", help="send a dead (or waiting) request again now, with a fresh max_age"
    )
    add_config(retry)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the request's ID from `outbox list`")
    which.add_argument("--dead", action="store_true", help="every dead request")

    purge = actions.add_parser(
        "purge", help="delete delivered, dead and duplicate requests (never pending ones)"
    )
    add_config(purge)
    purge.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="created longer ago than this, e.g. 7d, 12h, 30m",
    )
    add_migrate_command(actions)


def run_outbox_command(args: argparse.Namespace, outbox: OutboxSettings) -> int:
    """Carry out a parsed `outbox` command on the configured outbox; the exit status."""
    # migrate reads the SQLite file at `path` whatever `url` says.
    if not is_shared(outbox) or args.outbox_command == "migrate":
        status = _prepare_file(args, outbox)
        if status is not None:
            return status
    if args.outbox_command == "migrate":
        return run_migrate(args, outbox)
    try:
        store = open_outbox(outbox, busy_timeout=_BUSY_TIMEOUT)
    except OutboxError as exc:
        print(f"stasis-dnd: {exc}", file=sys.stderr)
        return 1
    try:
        if args.outbox_command == "list":
            return _list(store, args.state, args.limit, args.queue, args.profile)
        if args.outbox_command == "retry":
            return _retry(store, args.id, args.dead)
        return _purge(store, args.older_than)
    except OutboxError as exc:
        print(f"stasis-dnd: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _prepare_file(args: argparse.Namespace, outbox: OutboxSettings) -> int | None:
    """Before opening a SQLite outbox: an exit status if there is none, else
    None, having become its owner when run as root."""
    if not Path(outbox.path).exists():
        # Opening would create it, possibly owned by the wrong user.
        if args.outbox_command == "list":
            print(f"The outbox {outbox.path} does not exist yet: nothing was stored.")
            return 0
        print(f"stasis-dnd: there is no outbox at {outbox.path}", file=sys.stderr)
        return 1
    become = owner_to_become(os.stat(outbox.path), os.geteuid())
    if become is not None:
        # As root, files SQLite creates next to the outbox (-wal, -shm) would
        # be root's, and the service could no longer open its own outbox.
        os.setgroups([])
        os.setgid(become[1])
        os.setuid(become[0])
    return None


def owner_to_become(outbox: os.stat_result, euid: int) -> tuple[int, int] | None:
    """(uid, gid) to switch to before opening the outbox: its owner's, when run
    as root on an outbox that belongs to another user (the service's)."""
    if euid != 0 or outbox.st_uid == 0:
        return None
    return outbox.st_uid, outbox.st_gid


def _list(
    store: OutboxStore,
    state: str | None,
    limit: int,
    queue: str | None = None,
    profile: str | None = None,
) -> int:
    entries = store.entries(state, limit)
    # Filtered here, among the newest `limit`: the facts are a JSON column.
    if queue is not None:
        entries = [e for e in entries if e.fact("queue") == queue]
    if profile is not None:
        entries = [e for e in entries if e.profile == profile.strip().lower()]
    counts = store.counts()
    summary = ", ".join(f"{name} {counts[name]}" for name in STATES)
    if not entries:
        which = f"{state or 'stored'} requests" + (f" from queue {queue}" if queue else "")
        which += f" of profile {profile}" if profile else ""
        print(f"No {which} ({summary}).")
        return 0
    print(format_table(entries, time.time()))
    print(f"\n{summary}")
    return 0


def _retry(store: OutboxStore, row_id: int | None, dead: bool) -> int:
    now = time.time()
    if dead:
        count = store.retry_dead(now)
        print(f"{count} dead request(s) will be sent again; the running service picks them up.")
        return 0
    assert row_id is not None
    entry = store.retry(row_id, now)
    print(
        f"Request {entry.id} ({entry.phone}) will be sent again;"
        " the running service picks it up within seconds."
    )
    return 0


def _purge(store: OutboxStore, older_than: float) -> int:
    count = store.purge(time.time() - older_than)
    print(f"Deleted {count} finished request(s) created more than {older_than:g}s ago.")
    return 0


def format_table(entries: list[Entry], now: float) -> str:
    """The requests as an aligned text table (`now`: to tell a request that
    waits its own back-off)."""
    # The caller id column only when a request has one: most never do.
    with_caller_id = any(e.caller_id for e in entries)
    header: tuple[str, ...] = (
        "ID",
        "STATE",
        "CREATED",
        "NUMBER",
        "CALLER_ID",
        "QUEUE",
        "WAITED",
        "PROFILE",
        "CHANNEL",
        "TRIES",
        "NOTE",
    )
    rows = [header] + [
        (
            str(e.id),
            e.state,
            _when(e.created_at),
            _printable(str(e.phone)) or "(none)",
            _printable(str(e.caller_id)) or "(same)",
            _printable(e.fact("queue")) or "-",
            f"{e.fact('waited_seconds')}s" if e.fact("waited_seconds") else "-",
            _printable(e.profile),
            _printable(e.channel_id),
            str(e.attempts),
            _note(e, now),
        )
        for e in entries
    ]
    # Queue and waited time likewise: only a dialplan that passes them fills them.
    with_queue = any(e.fact("queue") or e.fact("waited_seconds") for e in entries)
    dropped = {4} if not with_caller_id else set()
    dropped |= {5, 6} if not with_queue else set()
    # The profile when one is not the default: a single-profile set-up never shows it.
    dropped |= {7} if all(e.profile == DEFAULT_PROFILE for e in entries) else set()
    rows = [tuple(cell for i, cell in enumerate(row) if i not in dropped) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _note(entry: Entry, now: float) -> str:
    if entry.state == DUPLICATE:
        text = f"repeats request {entry.duplicate_of}"
    elif entry.state == DELIVERED and entry.finished_at is not None:
        text = f"delivered {_when(entry.finished_at)}"
    elif entry.state == DEAD:
        text = f"gave up: {entry.last_error}"
    elif entry.next_attempt_at > now:
        # The CRM failed on this one: it waits on its own while the others go.
        text = f"next try {_when(entry.next_attempt_at)}: {entry.last_error}"
    else:
        text = entry.last_error
    text = _printable(text)
    return text if len(text) <= _NOTE_WIDTH else text[: _NOTE_WIDTH - 1] + "…"


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _printable(text: str) -> str:
    """Control characters (a caller-id could carry terminal escapes) as `?`."""
    return "".join("?" if unicodedata.category(c).startswith("C") else c for c in text)
