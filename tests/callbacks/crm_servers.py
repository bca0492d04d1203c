"""Servers and clients for the CRM client's edge tests: a pytest-httpserver
client, an answer of a given status and body, a transport that raises, and raw
HTTP over a socket for answers no test server sends."""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable

from pytest_httpserver import HTTPServer

from stasis_dnd.callbacks.crm import CrmClient, CrmResult
from stasis_dnd.http_pool import ConnectFailed
from stasis_dnd.settings import CrmSettings

OK = json.dumps({"status": "ok"})
ANY_PATH = re.compile(".*")


def client(server: HTTPServer) -> CrmClient:
    settings = CrmSettings(url=server.url_for(""), username="u", password="secret-pw")
    return CrmClient(settings, timeout=5.0)


def answer(server: HTTPServer, status: int, body: str = OK, **headers: str) -> CrmResult:
    server.clear()
    server.expect_request(ANY_PATH).respond_with_data(
        body, status=status, headers=headers, content_type="application/json"
    )
    return client(server).send("+79001234567", "r1")


def raising(exc: Exception) -> Callable[..., object]:
    def request(*args: object, **kwargs: object) -> object:
        raise exc

    return request


def connect_failed(cause: OSError) -> ConnectFailed:
    """What the pool raises when `cause` kept it from connecting."""
    exc = ConnectFailed(str(cause))
    exc.__cause__ = cause
    return exc


def read_request(conn: socket.socket) -> bytes:
    """The whole request, body too: data left unread would turn a close into a
    reset, and the client would see that instead of the answer under test."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def raw_answer(reply: bytes, **client_options: int) -> CrmResult:
    """Send one request to a server that answers `reply` as it is, then closes."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                read_request(conn)
                conn.sendall(reply)

        thread = threading.Thread(target=serve)
        thread.start()
        crm = CrmClient(CrmSettings(url=f"http://127.0.0.1:{port}"), **client_options)
        result = crm.send("1", "r")
        thread.join()
    return result


class HeldServer:
    """A server that reads one request, sends `reply` (possibly nothing) and holds
    the connection open until the test is done with it or the client closes it
    (`closed_by_client`)."""

    def __init__(self, reply: bytes = b"", hold: float = 10.0) -> None:
        self.reply = reply
        self.hold = hold
        self.received = b""
        self.done = threading.Event()
        self.closed_by_client = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            self.received = read_request(conn)
            conn.sendall(self.reply)
            end = time.monotonic() + self.hold
            while not self.done.is_set() and time.monotonic() < end:
                if select.select([conn], [], [], 0.05)[0] and not _receive(conn):
                    self.closed_by_client.set()
                    return

    def close(self) -> None:
        self.done.set()
        self._thread.join()
        self._server.close()


def _receive(conn: socket.socket) -> bytes:
    """What arrived; b"" once the client closed (a reset, with data unread, too)."""
    try:
        return conn.recv(65536)
    except ConnectionResetError:
        return b""
