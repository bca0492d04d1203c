"""Benchmark: CPU per HTTP request of the app's own keep-alive pool
(`stasis_dnd.http_pool`, on `http.client`) against `urllib3`'s
`HTTPConnectionPool` and `requests`, for the requests the app makes.

    .venv/bin/python -m bench.http_stack [--quick] [--rounds N] [--requests N]

A press-1 call makes four ARI requests (answer, start the prompt, mark the
call's request as sent, send the channel back to the dialplan) and one CRM
request. Each is sent here as the app sends it, to a keep-alive HTTP/1.1
server on loopback that runs in a child process (its CPU is not counted) and
answers as Asterisk and BGERP do. The figure is the calling thread's CPU time
(`time.thread_time`) per request, the median over rounds in which the
clients take turns, so that a loaded machine weighs on all of them alike.
The baseline is the pool the app uses, measured in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

import requests
import urllib3

from bench.common import machine, table
from stasis_dnd.http_pool import HttpPool

AUTH = {"Accept": "application/json", "Authorization": "Basic YXJpOnNlY3JldA=="}
PLAY_ANSWER = (
    b'{"id":"pb-1","media_uri":"sound:custom/dnd-offer","target_uri":"channel:1700000000.1",'
    b'"language":"en","state":"queued"}'
)
CRM_ANSWER = b'{"status":"ok"}'
# The four ARI requests of a press-1 call and what Asterisk answers to each.
ARI_CALL = (
    ("POST", "/ari/channels/1700000000.1/answer"),
    ("POST", "/ari/channels/1700000000.1/play/pb-1?media=sound%3Acustom%2Fdnd-offer"),
    ("POST", "/ari/channels/1700000000.1/variable?variable=STASIS_DND_SENT&value=sent"),
    ("POST", "/ari/channels/1700000000.1/continue"),
)
ARI_PER_CALL = len(ARI_CALL)
CRM_PER_CALL = 1
CRM_PATH = "/bgerp/admin/dynamic.do"
CRM_FORM = urlencode(
    [
        ("action", "runDynamicClass"),
        ("class", "ru.example.dyn.Callback"),
        ("aon", "+79001234567"),
        ("requestId", "1700000000.1-3f2a"),
        ("responseType", "json"),
        ("authToSession", "0"),
        ("j_username", "dnd"),
        ("j_password", "secret-pw"),
    ]
).encode()
CRM_HEADERS = {
    "User-Agent": "stasis-dnd/bench",
    "Content-Type": "application/x-www-form-urlencoded",
}


# --- the server ------------------------------------------------------------------


def _serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_connection, args=(conn,), daemon=True).start()


def _connection(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = conn.makefile("rb")
    with conn, reader:
        while True:
            line = reader.readline()
            if not line:
                return
            target = line.split()[1]
            length = 0
            while (header := reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            conn.sendall(_answer(target))


def _answer(target: bytes) -> bytes:
    if target.startswith(CRM_PATH.encode()):
        body = CRM_ANSWER
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\n"
    elif b"/play/" in target:
        body = PLAY_ANSWER
        head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    else:
        return b"HTTP/1.1 204 No Content\r\nServer: Asterisk/22.5.0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def start_server() -> tuple[str, multiprocessing.Process]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    process = multiprocessing.Process(target=_serve, args=(listener,), daemon=True)
    process.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # the child holds its own copy
    return url, process


# --- the clients: one ARI call's requests, one CRM request ------------------------


def pool_ari(url: str) -> Callable[[], list[int]]:
    pool = HttpPool(url, headers=AUTH, connect_timeout=5.0, read_timeout=10.0)

    def call() -> list[int]:
        return [pool.request(method, target).status for method, target in ARI_CALL]

    return call


def urllib3_ari(url: str) -> Callable[[], list[int]]:
    # The cheapest way through urllib3: urlopen, no retries, no redirects.
    pool = urllib3.connectionpool.connection_from_url(
        url, maxsize=10, headers=AUTH, timeout=urllib3.Timeout(connect=5.0, read=10.0)
    )

    def call() -> list[int]:
        statuses = []
        for method, target in ARI_CALL:
            reply = pool.urlopen(method, target, retries=False, redirect=False)
            reply.data  # noqa: B018  # the whole answer, as the pool reads it
            statuses.append(reply.status)
        return statuses

    return call


def requests_ari(url: str) -> Callable[[], list[int]]:
    session = requests.Session()
    session.headers.update(AUTH)
    session.trust_env = False

    def call() -> list[int]:
        return [
            session.request(
                method, url + target, timeout=(5.0, 10.0), allow_redirects=False
            ).status_code
            for method, target in ARI_CALL
        ]

    return call


def pool_crm(url: str) -> Callable[[], list[int]]:
    pool = HttpPool(url, headers=CRM_HEADERS, connect_timeout=5.0, read_timeout=5.0)

    def call() -> list[int]:
        with pool.exchange("POST", CRM_PATH, body=CRM_FORM) as reply:
            while reply.read1(8192):
                pass
        return [reply.status]

    return call


def urllib3_crm(url: str) -> Callable[[], list[int]]:
    pool = urllib3.connectionpool.connection_from_url(
        url, maxsize=1, headers=CRM_HEADERS, timeout=urllib3.Timeout(connect=5.0, read=5.0)
    )

    def call() -> list[int]:
        reply = pool.urlopen(
            "POST", CRM_PATH, body=CRM_FORM, retries=False, redirect=False, preload_content=False
        )
        for _ in reply.stream(8192):
            pass
        reply.release_conn()
        return [reply.status]

    return call


def requests_crm(url: str) -> Callable[[], list[int]]:
    # As the CRM client sent it before it moved onto the pool.
    session = requests.Session()
    session.headers["User-Agent"] = "stasis-dnd/bench"
    session.trust_env = False
    pairs = parse_qsl(CRM_FORM.decode())

    def call() -> list[int]:
        reply = session.request(
            "POST",
            url + CRM_PATH,
            timeout=(5.0, 5.0),
            stream=True,
            allow_redirects=False,
            data=pairs,
        )
        for _ in reply.iter_content(chunk_size=8192):
            pass
        reply.close()
        return [reply.status_code]

    return call


CLIENTS: dict[str, dict[str, Callable[[str], Callable[[], list[int]]]]] = {
    "ARI": {"http_pool": pool_ari, "urllib3": urllib3_ari, "requests": requests_ari},
    "CRM": {"http_pool": pool_crm, "urllib3": urllib3_crm, "requests": requests_crm},
}


def measure(url: str, rounds: int, count: int) -> dict[tuple[str, str], float]:
    """Median thread CPU seconds per request, by (kind, client)."""
    calls = {
        (kind, name): make(url) for kind, made in CLIENTS.items() for name, make in made.items()
    }
    per_request = {kind: ARI_PER_CALL if kind[0] == "ARI" else 1 for kind in calls}
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for (kind, name), call in calls.items():
        expected = [204, 201, 204, 204] if kind == "ARI" else [200]
        for _ in range(50):  # connections open, caches warm
            statuses = call()
        assert statuses == expected, f"{kind} through {name} answered {statuses}"
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.thread_time()
            for _ in range(count):
                call()
            samples[key].append((time.thread_time() - start) / (count * per_request[key]))
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=500, help="calls per client per round")
    args = parser.parse_args()
    rounds, count = (3, 100) if args.quick else (args.rounds, args.requests)
    url, server = start_server()
    try:
        figures = measure(url, rounds, count)
    finally:
        server.kill()
    print(machine(f"{rounds} rounds x {count} calls per client, loopback keep-alive server"))
    rows = []
    for kind, clients in CLIENTS.items():
        base = figures[(kind, "http_pool")]
        for name in clients:
            cpu = figures[(kind, name)]
            rows.append((kind, name, f"{cpu * 1e3:.3f}", f"{(cpu - base) * 1e3:+.3f}"))
    print(table(("request", "client", "CPU ms/request", "vs http_pool"), rows))
    extra = {
        name: ARI_PER_CALL * (figures[("ARI", name)] - figures[("ARI", "http_pool")])
        + CRM_PER_CALL * (figures[("CRM", name)] - figures[("CRM", "http_pool")])
        for name in ("urllib3", "requests")
    }
    print(
        f"Per press-1 call ({ARI_PER_CALL} ARI requests + {CRM_PER_CALL} CRM request), "
        "CPU more than http_pool: "
        + ", ".join(f"{name} {value * 1e3:+.2f} ms" for name, value in extra.items())
    )
    verdict = "within" if extra["urllib3"] <= 0.3e-3 else "over"
    print(f"urllib3 is {verdict} the 0.3 ms per call the app allows for a library.")


if __name__ == "__main__":
    main()
