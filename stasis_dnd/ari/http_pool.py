"""Keep-alive HTTP/1.1 connections to one server, on the standard library's
`http.client`, shared by threads: the transport under `AriRest`.

Why not `requests` or `urllib3`: the app makes four ARI requests per call,
and each layer costs CPU. Measured here (bench/README.md), CPU per request in
a tight loop: `requests` 0.91 ms, `urllib3` 0.30 ms, `http.client` 0.13 ms;
inside the running app under load (thread CPU per ARI request): `urllib3`
0.80 ms, this pool 0.46 ms. What is kept of urllib3's pool is what ARI needs:
idle connections reused last-in first-out, a connection the server closed
while idle is noticed before it is reused (or, if it closes just as it is
reused, the request goes once more on a new connection when that is safe),
connect and read timeouts, TLS, no other retries, no redirects, no proxies.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

# Methods whose repeat has the effect of one request (RFC 9110 section 9.2.2).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class ConnectFailed(OSError):
    """The connection could not be opened; `__cause__` says why (refused,
    timed out, name not resolved, TLS handshake)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    body: bytes
    # Where a 3xx points: reported, never followed (the request carries credentials).
    location: str = ""


class HttpPool:
    """Requests to the server of `base_url`, over at most `maxsize` idle
    keep-alive connections (more are opened when more threads call at once)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str],
        connect_timeout: float,
        read_timeout: float,
        maxsize: int = 10,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: the client context for an https URL (required for one)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// URL with a host")
        if parts.scheme == "https" and tls is None:
            raise ValueError("an https URL needs a TLS context")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._headers = headers
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._maxsize = maxsize
        self._tls = tls
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._closed = False

    def request(self, method: str, target: str) -> Reply:
        """One request without a body; the whole answer. Raises ConnectFailed,
        or OSError / http.client.HTTPException once connected."""
        conn = self._take()
        if conn is not None:
            reply = self._exchange(conn, method, target, reused=True)
            if reply is not None:
                return reply
        reply = self._exchange(self._open(), method, target, reused=False)
        assert reply is not None  # only a reused connection asks to go again
        return reply

    def _exchange(
        self, conn: http.client.HTTPConnection, method: str, target: str, *, reused: bool
    ) -> Reply | None:
        """The request on `conn` and its answer; None if a reused connection
        proved closed by the server and sending the request again is safe."""
        stage = "send"
        try:
            conn.request(method, target, headers=self._headers)
            stage = "wait"
            response = conn.getresponse()
            stage = "read"
            body = response.read()
        except ConnectionError:
            conn.close()
            # The server may close an idle connection just as the request goes
            # out (`_take` notices it only when the close came first). Refused
            # on sending: no byte of the (small, bodyless) request was taken, so
            # any method goes again. Closed before any answer: the server may
            # have acted, so only a request that may be repeated (RFC 9110) does.
            if reused and (stage == "send" or (stage == "wait" and method in _IDEMPOTENT)):
                return None
            raise
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Reply(response.status, response.reason, body, response.getheader("Location", ""))

    def close(self) -> None:
        """Close the idle connections; those in use close when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not _dropped(conn):
                return conn
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def _open(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        try:
            conn.connect()  # the TCP connect and any TLS handshake, within connect_timeout
        except OSError as exc:
            conn.close()
            raise ConnectFailed(str(exc)) from exc
        sock = conn.sock
        assert sock is not None
        sock.settimeout(self._read_timeout)
        # Requests go out in one send; no waiting for the server's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True if the server closed the idle connection (it reads as ready: EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
