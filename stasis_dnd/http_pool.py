"""Keep-alive HTTP/1.1 connections to one server, on the standard library's
`http.client`, shared by threads: the transport under ARI's `AriRest` and the
CRM client.

Why not `requests` or `urllib3`: the app makes four ARI requests and one CRM
request per call, and each layer costs CPU. Measured by `bench.http_stack`
(bench/README.md, "One HTTP stack"), CPU per request in a tight loop:
`urllib3` about 1.7x what this pool costs, `requests` about 4x; per call
`urllib3` is 0.36-0.70 ms more, over the 0.3 ms the app allows a library. What is kept
of urllib3's pool is what the app needs: idle connections reused last-in
first-out, a connection the server closed while idle is noticed before it is
reused (or, if it closes just as it is reused, the request goes once more on
a new connection when that is safe), connect and read timeouts, TLS, an http
proxy (CONNECT for https, an absolute URI for http), no other retries, no
redirects.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# Methods whose repeat has the effect of one request (RFC 9110 section 9.2.2).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class ConnectFailed(OSError):
    """The connection could not be opened; `__cause__` says why (refused,
    timed out, name not resolved, TLS handshake, the proxy's refusal)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    body: bytes
    # Where a 3xx points: reported, never followed (the request carries credentials).
    location: str = ""


def environment_proxy(url: str) -> str:
    """The proxy the environment names for `url` (HTTPS_PROXY for https,
    HTTP_PROXY for http, else ALL_PROXY; none for a host in NO_PROXY), or ""."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all") or ""
    if not proxy or not parts.hostname:
        return ""
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return "" if urllib.request.proxy_bypass(netloc) else proxy


class HttpPool:
    """Requests to the server of `base_url`, over at most `maxsize` idle
    keep-alive connections (more are opened when more threads call at once)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        connect_timeout: float,
        read_timeout: float,
        maxsize: int = 10,
        tls: ssl.SSLContext | None = None,
        proxy: str = "",
    ) -> None:
        """`tls`: the client context for an https URL (required for one).
        `proxy`: an http://[user:password@]host:port proxy to go through."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// URL with a host")
        if parts.scheme == "https" and tls is None:
            raise ValueError("an https URL needs a TLS context")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._headers = dict(headers)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._maxsize = maxsize
        self._tls = tls
        self._proxy: tuple[str, int] | None = None
        self._proxy_headers: dict[str, str] = {}
        # A plain http request through a proxy names the whole URL.
        self._origin = ""
        if proxy:
            self._use_proxy(proxy)
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._closed = False

    def _use_proxy(self, proxy: str) -> None:
        parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        # Named by its host only: the URL may hold the proxy's password.
        if not parts.hostname:
            raise ValueError("the proxy is not an http://host:port URL")
        if parts.scheme != "http":
            raise ValueError(f"the proxy {parts.hostname} is not an http:// proxy")
        self._proxy = (parts.hostname, parts.port or 80)
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(secret.encode("latin-1")).decode("ascii")
            self._proxy_headers["Proxy-Authorization"] = auth
        if not self._https:
            port = "" if self._port == 80 else f":{self._port}"
            self._origin = f"http://{self._host}{port}"
            self._headers.update(self._proxy_headers)

    def request(
        self, method: str, target: str, *, body: bytes | None = None, content_type: str = ""
    ) -> Reply:
        """One request; the whole answer. Raises ConnectFailed, or OSError /
        http.client.HTTPException once connected."""
        with self.exchange(method, target, body=body, content_type=content_type) as response:
            body = response.read()
        return Reply(response.status, response.reason, body, response.getheader("Location", ""))

    @contextmanager
    def exchange(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        content_type: str = "",
        timeouts: tuple[float, float] | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """One request; the answer as it arrives, to be read within the block.
        Its connection is kept if the answer was read to its end, else closed.
        `content_type`: the body's, for this request only (else the pool's
        headers say it, or nothing does). `timeouts`: (connect, read) for this
        request instead of the pool's. Raises as `request` does."""
        connect, read = timeouts or (self._connect_timeout, self._read_timeout)
        headers = {**self._headers, "Content-Type": content_type} if content_type else self._headers
        conn = self._take()
        response = None
        if conn is not None:
            if timeouts is not None and conn.sock is not None:
                conn.sock.settimeout(read)
            response = self._send(conn, method, target, body, headers, reused=True)
        if response is None:
            conn = self._open(connect, read)
            response = self._send(conn, method, target, body, headers, reused=False)
            assert response is not None  # only a reused connection asks to go again
        assert conn is not None
        try:
            yield response
        except BaseException:
            conn.close()
            raise
        whole = response.isclosed() or (not response.chunked and response.length == 0)
        if not whole or response.will_close:
            conn.close()
            return
        response.close()  # read to its end; the connection may take the next request
        if timeouts is not None and conn.sock is not None:
            conn.sock.settimeout(self._read_timeout)  # the pool's own, for the next request
        self._give_back(conn)

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        reused: bool,
    ) -> http.client.HTTPResponse | None:
        """The request on `conn` and the head of its answer; None if a reused
        connection proved closed by the server and sending again is safe."""
        stage = "send"
        try:
            conn.request(method, self._origin + target, body, headers=headers)
            stage = "wait"
            return conn.getresponse()
        except ConnectionError:
            conn.close()
            # The server may close an idle connection just as the request goes
            # out (`_take` notices it only when the close came first). Refused
            # on sending (head and body go in separate sends): the server had
            # closed before it, so it acts on none of it and any method goes
            # again. Closed before any answer: the server may
            # have acted, so only a request that may be repeated (RFC 9110) does.
            if reused and (stage == "send" or (stage == "wait" and method in _IDEMPOTENT)):
                return None
            raise
        except BaseException:
            conn.close()
            raise

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

    def _open(self, connect_timeout: float, read_timeout: float) -> http.client.HTTPConnection:
        host, port = self._proxy or (self._host, self._port)
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._tls
            )
            if self._proxy:
                conn.set_tunnel(self._host, self._port, self._proxy_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            # The TCP connect, any CONNECT and any TLS handshake, within connect_timeout.
            conn.connect()
        except OSError as exc:
            conn.close()
            raise ConnectFailed(str(exc)) from exc
        sock = conn.sock
        assert sock is not None
        sock.settimeout(read_timeout)
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
