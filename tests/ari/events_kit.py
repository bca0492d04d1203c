"""What the EventStream tests share: a WebSocket peer on loopback (the
`websockets` package's threaded server), a stream wired to a recorder, and a
way to wait for what they report."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from stasis_dnd.ari.events import EventStream
from stasis_dnd.backoff import Backoff
from stasis_dnd.settings import AriSettings

PASSWORD = "s3cret+&pw"
WAIT = 10.0  # generous bound for conditions that normally hold in milliseconds


class Recorder:
    """Everything the stream reported, in order, with a way to wait for it."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, kind: str, value: Any = None) -> None:
        with self._lock:
            self.log.append((kind, value))

    def of(self, kind: str) -> list[Any]:
        with self._lock:
            return [value for k, value in self.log if k == kind]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Poll: some conditions (server requests, back-off) are not ours to notify."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; last reports {self.log[-5:]!r}"
            time.sleep(0.005)


class AriWsServer:
    """A WebSocket peer that records upgrade requests and hands out connections."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.reject: HTTPStatus | None = None
        self.redirect: tuple[HTTPStatus, str] | None = None  # status, Location
        # Sent the moment a connection opens, racing the client's on_connected.
        self.greeting: str | None = None
        self.connections: queue.Queue[ServerConnection] = queue.Queue()
        self._server: Server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.reject is not None:
            return connection.respond(self.reject, "no\n")
        if self.redirect is not None:
            status, location = self.redirect
            response = connection.respond(status, "")
            response.headers["Location"] = location
            return response
        return None

    def _handle(self, connection: ServerConnection) -> None:
        if self.greeting is not None:
            connection.send(self.greeting)
        self.connections.put(connection)
        # Hold the connection open until either side ends it.
        with contextlib.suppress(ConnectionClosed):
            for _ in connection:
                pass

    def next_connection(self) -> ServerConnection:
        return self.connections.get(timeout=WAIT)

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(WAIT)


def drop(connection: ServerConnection) -> None:
    """End the TCP connection without a WebSocket close frame."""
    connection.socket.shutdown(socket.SHUT_RDWR)


def settings_for(port: int, path: str = "", connect_timeout: float = 2.0) -> AriSettings:
    return AriSettings(
        url=f"http://127.0.0.1:{port}{path}",
        username="dnd",
        password=PASSWORD,
        app="stasis-dnd",
        connect_timeout=connect_timeout,
        read_timeout=2.0,
    )


class Harness:
    """An EventStream wired to a Recorder; stopped at the end of the test."""

    def __init__(self) -> None:
        self.rec = Recorder()
        self.streams: list[EventStream] = []

    def stream(
        self, port: int, path: str = "", connect_timeout: float = 2.0, **options: Any
    ) -> EventStream:
        options.setdefault("backoff", Backoff(base=0.01, cap=0.05))
        options.setdefault("ping_interval", 0.5)
        options.setdefault("ping_timeout", 0.5)
        stream = EventStream(
            settings_for(port, path, connect_timeout),
            on_event=lambda message: self.rec.add("event", message),
            on_connected=lambda: self.rec.add("connected"),
            on_disconnected=lambda reason: self.rec.add("disconnected", reason),
            on_bad_message=lambda excerpt, reason: self.rec.add("bad", (excerpt, reason)),
            **options,
        )
        self.streams.append(stream)
        return stream

    def count(self, kind: str) -> Callable[[], int]:
        return lambda: len(self.rec.of(kind))


def start_connected(
    harness: Harness, server: AriWsServer, **options: Any
) -> tuple[EventStream, ServerConnection]:
    stream = harness.stream(server.port, **options)
    stream.start()
    connection = server.next_connection()
    assert stream.wait_connected(WAIT)
    return stream, connection


class SilentPeer:
    """Completes the WebSocket upgrade on a raw socket, then says nothing unless
    a test writes to the accepted connection itself."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self.accepted: queue.Queue[socket.socket] = queue.Queue()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = Headers()
            for line in head.decode().split("\r\n")[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    key[name.strip()] = value.strip()
            digest = hashlib.sha1((key["Sec-WebSocket-Key"] + self.GUID).encode()).digest()
            accept = base64.b64encode(digest).decode()
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            self.accepted.put(conn)

    def close(self) -> None:
        self._listener.close()
        while not self.accepted.empty():
            self.accepted.get().close()
