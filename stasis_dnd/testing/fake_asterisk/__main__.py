"""Run the fake Asterisk as its own process, for a benchmark or a manual try.

    python -m stasis_dnd.testing.fake_asterisk --port 18088 \
        --username stasis-dnd --password secret --app stasis-dnd

Control it over HTTP (no auth; it listens on loopback):
    POST /_fake/calls   {"number": "+79001234567", "count": 100,
                         "script": [["wait_playback_start"], ["sleep", 0.5], ["dtmf", "1"]]}
    GET  /_fake/calls/{id}   one call's record
    GET  /_fake/stats        counters and latencies
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from stasis_dnd.testing.fake_asterisk.pbx import DEFAULT_SOUNDS
from stasis_dnd.testing.fake_asterisk.server import FakeAsterisk


def parse_sound(text: str) -> tuple[str, float]:
    """NAME=SECONDS, e.g. vm-goodbye=0.88."""
    name, _, seconds = text.rpartition("=")
    try:
        length = float(seconds)
    except ValueError:
        length = -1.0
    if not name or length < 0:
        raise argparse.ArgumentTypeError(f"expected NAME=SECONDS, got {text!r}")
    return name, length


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stasis_dnd.testing.fake_asterisk",
        description="A fake Asterisk 22 ARI server on loopback, for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--app", required=True, help="the Stasis application name")
    parser.add_argument(
        "--sound",
        type=parse_sound,
        action="append",
        metavar="NAME=SECONDS",
        help="a sound that exists and its length (repeat; replaces the default table)",
    )
    parser.add_argument("--dialplan-linger", type=float, default=10.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    sounds = dict(args.sound) if args.sound else DEFAULT_SOUNDS
    fake = FakeAsterisk(
        args.username,
        args.password,
        args.app,
        sounds,
        host=args.host,
        port=args.port,
        dialplan_linger=args.dialplan_linger,
    )
    try:
        fake.start()
    except OSError as exc:
        print(
            f"fake Asterisk: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        fake.stop()
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"fake Asterisk listening on {fake.url} (app {args.app})", flush=True)
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
