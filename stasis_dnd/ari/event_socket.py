"""The event WebSocket's own pieces: its URL, the upgrade (and what each way
it fails means to the admin), and closing it. `events.EventStream` runs the
connection; these do not keep state.

A redirect in answer to the upgrade is a failed attempt, never followed: the
request carries the ARI password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from urllib.parse import urlencode, urlsplit, urlunsplit

import websocket

from stasis_dnd.logs import strip_userinfo
from stasis_dnd.settings import AriSettings
from stasis_dnd.tls import certificate_problem, handshake_problem

# The longest excerpt of a message, a close reason or an error a log line gets.
EXCERPT_LIMIT = 200
# How long a polite close waits for Asterisk's close frame in reply.
CLOSE_WAIT = 0.5
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
# The most one socket read takes: an event is 0.5-3 KB. Each read allocates
# its whole size first; 64 KiB reads cost 1.2 KiB more RSS per call at 1,000
# calls (bench.fake_load), 4 KiB ones nothing measurable.
READ_AHEAD = 4096


def events_url(settings: AriSettings) -> str:
    """ws(s)://HOST[/prefix]/ari/events?app=APP&subscribeAll=false, no credentials."""
    parts = urlsplit(strip_userinfo(settings.url.rstrip("/")))
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError("ARI url must start with http:// or https://")
    query = urlencode({"app": settings.app, "subscribeAll": "false"})
    return urlunsplit((scheme, parts.netloc, parts.path + "/ari/events", query, ""))


class UpgradeFailed(Exception):
    """One failed connection attempt, already described for the log."""

    def __init__(self, reason: str, *, needs_admin: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.needs_admin = needs_admin


def upgrade(
    ws: websocket.WebSocket,
    url: str,
    *,
    auth_header: str,
    username: str,
    ca_bundle: str,
    connect_timeout: float,
    io_timeout: float,
) -> None:
    """Open the socket and do the upgrade; raise UpgradeFailed with a reason."""
    try:
        ws.connect(  # type: ignore[no-untyped-call]
            url,
            header=[auth_header],
            timeout=connect_timeout,
            suppress_origin=True,
            # ARI is reached directly, never through an environment proxy.
            http_no_proxy=["*"],
            # A redirect would carry the Authorization header to wherever it points.
            redirect_limit=0,
        )
    except websocket.WebSocketBadStatusException as exc:
        status = exc.status_code
        if status == 401:
            raise UpgradeFailed(
                f"Asterisk refused the ARI username or password (ari.conf) for user {username!r}",
                needs_admin=True,
            ) from exc
        if 300 <= status < 400:  # websocket-client before 1.4 raises on 307 and 308
            headers = exc.resp_headers if isinstance(exc.resp_headers, dict) else {}
            problem = _redirect_text(status, headers.get("location"))
            raise UpgradeFailed(problem, needs_admin=True) from exc
        raise UpgradeFailed(
            f"Asterisk answered the upgrade with HTTP {status} "
            "(is ARI enabled in ari.conf and http.conf?)"
        ) from exc
    except ConnectionRefusedError as exc:
        raise UpgradeFailed("connection refused (is Asterisk running?)") from exc
    except (TimeoutError, websocket.WebSocketTimeoutException) as exc:
        raise UpgradeFailed(f"no answer within {connect_timeout:g} s") from exc
    except socket.gaierror as exc:
        raise UpgradeFailed("the host name does not resolve") from exc
    except ssl.SSLCertVerificationError as exc:
        problem = certificate_problem(exc, ca_bundle)
        raise UpgradeFailed(f"Asterisk {problem}", needs_admin=True) from exc
    except ssl.SSLError as exc:
        raise UpgradeFailed(f"Asterisk {handshake_problem(exc)}") from exc
    except (OSError, websocket.WebSocketException) as exc:
        redirect = redirect_problem(ws)
        if redirect:
            raise UpgradeFailed(redirect, needs_admin=True) from exc
        raise UpgradeFailed(f"{type(exc).__name__}: {exc}"[:EXCERPT_LIMIT]) from exc
    # websocket-client before 1.4 returns from connect() on a 301/302/303 it did not follow.
    redirect = redirect_problem(ws)
    if redirect:
        ws.shutdown()  # type: ignore[no-untyped-call]
        raise UpgradeFailed(redirect, needs_admin=True)
    # From now on the timeout bounds a frame that stops mid-way, and a send.
    ws.settimeout(io_timeout)


def redirect_problem(ws: websocket.WebSocket) -> str:
    """What to fix when the upgrade was answered with a redirect (not followed); else ""."""
    response = ws.handshake_response
    if response is None or not 300 <= response.status < 400:
        return ""
    return _redirect_text(response.status, response.headers.get("location"))


def _redirect_text(status: int, location: str | None) -> str:
    where = strip_userinfo(location)[:EXCERPT_LIMIT] if location else "no Location"
    return (
        f"ARI answered with a redirect (HTTP {status} to {where}), which is not "
        "followed so that the password goes nowhere else: set [ari] url to the address "
        "ARI itself is served at"
    )


class ReadAhead:
    """Feeds websocket-client's frame parser from one large socket read at a
    time. Left to itself the parser reads a frame's header, its length and its
    payload apart, each a poll and a recv (the socket has a timeout), and a
    reader thread gives up the GIL around every one of those calls: with the
    reader's own poll, up to 7 system calls per event become 3 at most, none
    for an event already read ahead.
    Errors and end of stream are still websocket-client's (`ws._recv`)."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._read = ws.frame_buffer.recv
        self._data = b""
        self._offset = 0
        ws.frame_buffer.recv = self.recv

    def pending(self) -> bool:
        """Bytes already read that the parser has not had: no need to wait."""
        return self._offset < len(self._data)

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes, from what was read ahead or one new read."""
        if not self.pending():
            self._data = self._read(READ_AHEAD)
            self._offset = 0
        start = self._offset
        self._offset = min(start + size, len(self._data))
        return self._data[start : self._offset]


def shutdown(ws: websocket.WebSocket) -> None:
    """Wake a reader blocked on this socket; later reads see end of stream."""
    sock = ws.sock
    if sock is None:
        return
    # OSError: already closed or never connected.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def close_politely(ws: websocket.WebSocket) -> None:
    """Send a close frame, wait briefly for the reply, close the socket."""
    with contextlib.suppress(Exception):  # best effort: the peer may be gone
        ws.close(status=websocket.STATUS_NORMAL, timeout=CLOSE_WAIT)


def close_reason(payload: bytes) -> str:
    if len(payload) < 2:
        return "Asterisk closed the connection"
    code = int.from_bytes(payload[:2], "big")
    text = payload[2:EXCERPT_LIMIT].decode("utf-8", "replace")
    return f"Asterisk closed the connection (code {code}{': ' + text if text else ''})"
