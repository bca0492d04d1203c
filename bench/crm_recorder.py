"""The CRM emulator as a process of its own for the benchmarks: every request
is appended to a file as "<unix time>\\t<method>\\t<aon>\\t<answer>".

    python -m bench.crm_recorder --port 19188 --username U --password P --out FILE

The time is the emulator's (time.time(), taken once the request has been
read), on the same clock as Asterisk's dialplan timestamps on this machine.
Running it apart from the benchmark keeps its timing free of the benchmark's
own work (the GIL).
"""

from __future__ import annotations

import argparse
import signal
import threading
from http.server import BaseHTTPRequestHandler
from typing import TextIO

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import Received


class _NoDelayEmulator(CrmEmulator):
    """Answers without Nagle's delay: BaseHTTPRequestHandler writes the headers
    and the body in two sends, and with Nagle on, the body waits for the
    client's delayed ACK of the headers, 40 ms. A real CRM (Tomcat) answers in
    one buffer; the benchmark must not charge this stall to the clients."""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler_class()
        handler.disable_nagle_algorithm = True
        return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crm_recorder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--out", required=True, help="file the request lines are appended to")
    args = parser.parse_args(argv)
    lock = threading.Lock()
    out: TextIO = open(args.out, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def record(received: Received) -> None:
        phone = received.param("aon") or ""
        line = f"{received.at:.6f}\t{received.method}\t{phone}\t{received.answer}\n"
        with lock:
            out.write(line)

    emulator = _NoDelayEmulator(args.username, args.password, port=args.port, on_request=record)
    emulator.start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"CRM emulator listening on {emulator.url}", flush=True)
    stop.wait()
    emulator.stop()
    out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
