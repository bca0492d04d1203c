"""ARI REST client: the few channel, playback and lookup calls the app makes.

ari-py cannot be imported on Python 3 (docs/asterisk-behaviour.md), so this
speaks ARI over keep-alive connections of the standard library's `http.client`
(`stasis_dnd.http_pool`: the app makes four requests per call, and through
`requests` each costs about 4x the CPU, through `urllib3` 1.7x; see that
module). Every call carries the (connect, read) timeout from `AriSettings`;
every failure is one of the typed errors below, whose message is one sentence
and never contains the password. https is verified against `[ari] ca_bundle`
or the system's CAs (`stasis_dnd.tls`); a certificate that fails is an
`AriCertificateError` saying what to fix.

Thread safety: one `AriRest` is shared by the worker threads. The pool hands
each thread its own connection and keeps `pool_size` of them open, so that
busy workers do not reconnect.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from stasis_dnd.http_pool import ConnectFailed, HttpPool, Reply
from stasis_dnd.logs import strip_userinfo
from stasis_dnd.settings import AriSettings, DialplanTarget
from stasis_dnd.tls import certificate_problem, client_tls_context, handshake_problem

log = logging.getLogger(__name__)

# Channel operations fail with these when the caller hung up (404), the channel
# left Stasis (409) or its state forbids the operation (412): a race, not a crash.
_CHANNEL_GONE_STATUSES = frozenset({404, 409, 412})
_DETAIL_LIMIT = 200


class AriError(Exception):
    """ARI answered with an error, or could not be asked at all."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChannelNotFound(AriError):
    """404/409/412: no channel by this id in Stasis to act on; it hung up or left
    Stasis before (or while) we acted. The runtime feeds the call's flow the
    core's `ChannelGone` event for it."""

    def __init__(self, message: str, channel_id: str, status: int) -> None:
        super().__init__(message, status)
        self.channel_id = channel_id


class AriAuthError(AriError):
    """Asterisk refused our ARI credentials or our right to change things."""


class AriUnavailable(AriError):
    """Asterisk could not be reached, timed out, or failed internally (5xx)."""


class AriCertificateError(AriUnavailable):
    """Asterisk's TLS certificate failed verification: an admin must act
    (`[ari] ca_bundle`, the URL's host name, or Asterisk's certificate)."""


def _segment(value: str) -> str:
    # Asterisk splits the path on "/" before decoding each segment (res_ari.c),
    # so "/" inside an id (sound "custom/x") must travel as %2F; "+" as %2B.
    return quote(value, safe="")


class AriRest:
    """Blocking ARI REST calls over one keep-alive session; see module docstring."""

    def __init__(self, settings: AriSettings, *, pool_size: int = 10) -> None:
        """`pool_size`: at least the number of threads calling at once."""
        self._base = strip_userinfo(settings.url.rstrip("/")) + "/ari"
        self._username = settings.username
        self._ca_bundle = settings.ca_bundle
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._path = urlsplit(self._base).path
        headers = {
            "Accept": "application/json",
            "Authorization": _basic_auth(settings.username, settings.password),
        }
        # ARI is reached directly: no proxy variables, no ~/.netrc; no retries,
        # no redirects.
        https = self._base.lower().startswith("https:")
        try:
            tls = client_tls_context(settings.ca_bundle) if https else None
        except ValueError as exc:
            raise AriError(f"[ari] ca_bundle: {exc}.") from None
        try:
            self._pool = HttpPool(
                self._base,
                headers=headers,
                connect_timeout=self._timeout[0],
                read_timeout=self._timeout[1],
                maxsize=pool_size,
                tls=tls,
            )
        except (ValueError, OSError) as exc:
            raise AriError(f"ARI url {self._base} is not usable: {exc}.") from None

    @property
    def base_url(self) -> str:
        """The ARI root every path is appended to, e.g. http://127.0.0.1:8088/ari."""
        return self._base

    # -- channel operations: 404/409/412 raise ChannelNotFound ---------------------

    def answer(self, channel_id: str) -> None:
        """Answer the channel."""
        self._call("POST", f"/channels/{_segment(channel_id)}/answer", channel_id=channel_id)

    def play(self, channel_id: str, playback_id: str, media: str, language: str = "") -> None:
        """Start playing `media` (e.g. "sound:vm-goodbye") under our own playback id."""
        params = {"media": media, "lang": language} if language else {"media": media}
        path = f"/channels/{_segment(channel_id)}/play/{_segment(playback_id)}"
        self._call("POST", path, params, channel_id=channel_id)

    def continue_in_dialplan(self, channel_id: str, target: DialplanTarget | None = None) -> None:
        """Send the channel back to the dialplan: to `target`, or to the
        priority after Stasis() when it is None."""
        params: dict[str, str] | None = None
        if target is not None:
            params = {"context": target.context, "extension": target.extension}
            # ARI takes a numeric priority or a label, not both.
            key = "priority" if target.priority.isdigit() else "label"
            params[key] = target.priority
        path = f"/channels/{_segment(channel_id)}/continue"
        self._call("POST", path, params, channel_id=channel_id)

    def set_variable(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable (the dialplan and a later recovery can read it)."""
        path = f"/channels/{_segment(channel_id)}/variable"
        self._call("POST", path, {"variable": name, "value": value}, channel_id=channel_id)

    def get_variable(self, channel_id: str, name: str) -> str:
        """A channel variable's value; "" when it is not set."""
        path = f"/channels/{_segment(channel_id)}/variable"
        # Asterisk answers 404 both for an unset variable and a missing channel;
        # either way there is no value to read.
        resp = self._call("GET", path, {"variable": name}, missing_ok=True)
        if resp is None:
            return ""
        value = self._json_object(resp, "GET /channels/{id}/variable").get("value")
        return value if isinstance(value, str) else ""

    def hangup(self, channel_id: str) -> None:
        """Hang the channel up with cause "normal"."""
        path = f"/channels/{_segment(channel_id)}"
        self._call("DELETE", path, {"reason": "normal"}, channel_id=channel_id)

    def get_channel(self, channel_id: str) -> dict[str, Any]:
        """The ARI Channel object."""
        resp = self._call("GET", f"/channels/{_segment(channel_id)}", channel_id=channel_id)
        return self._json_object(resp, "GET /channels/{id}")

    # -- other operations ------------------------------------------------------

    def stop_playback(self, playback_id: str) -> bool:
        """Stop a playback; False if it had already finished (404), which is fine."""
        resp = self._call("DELETE", f"/playbacks/{_segment(playback_id)}", missing_ok=True)
        return resp is not None

    def application(self, app: str) -> dict[str, Any]:
        """The ARI Application object; its `channel_ids` are the channels in Stasis."""
        resp = self._call("GET", f"/applications/{_segment(app)}")
        return self._json_object(resp, "GET /applications/{app}")

    def filter_events(self, app: str, allowed: Iterable[str]) -> None:
        """Have Asterisk send the app only events of these types (`PUT
        /applications/{app}/eventFilter`, documented since Asterisk 18; an older
        one refuses it with 404, 405 or 400, an AriError like any other)."""
        body = json.dumps({"allowed": [{"type": t} for t in sorted(allowed)]}).encode()
        self._call("PUT", f"/applications/{_segment(app)}/eventFilter", body=body)

    def sound(self, sound_id: str) -> dict[str, Any] | None:
        """The ARI Sound object (languages and formats), or None if Asterisk has none."""
        resp = self._call("GET", f"/sounds/{_segment(sound_id)}", missing_ok=True)
        return None if resp is None else self._json_object(resp, "GET /sounds/{id}")

    def asterisk_info(self) -> dict[str, Any]:
        """GET /asterisk/info: build, system, config and status of the Asterisk."""
        return self._json_object(self._call("GET", "/asterisk/info"), "GET /asterisk/info")

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()

    def __enter__(self) -> AriRest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        channel_id: str | None = None,
        missing_ok: bool = False,
        body: bytes | None = None,
    ) -> Reply | None:
        """Send one request (`body`: JSON); the answer if 2xx, None if 404 and
        `missing_ok`."""
        url = self._path + path + ("?" + urlencode(params) if params else "")
        try:
            json_type = "application/json" if body is not None else ""
            resp = self._pool.request(method, url, body=body, content_type=json_type)
        except (http.client.HTTPException, OSError) as exc:
            for cause in _causes(exc):
                if isinstance(cause, ssl.SSLCertVerificationError):
                    problem = certificate_problem(cause, self._ca_bundle)
                    raise AriCertificateError(f"ARI at {self._base} {problem}.") from exc
            what = _describe_failure(exc, self._timeout)
            raise AriUnavailable(f"ARI at {self._base} {what} ({method} {path}).") from exc
        status = resp.status
        log.debug("ARI %s %s -> %d", method, path, status)
        if status < 300:
            return resp
        if status == 404 and missing_ok:
            return None
        if 300 <= status < 400:
            where = strip_userinfo(resp.location)[:_DETAIL_LIMIT] or "no Location"
            raise AriError(
                f"ARI at {self._base} answered {method} {path} with a redirect ({status} to "
                f"{where}), which is not followed so that the password goes nowhere else: "
                "set [ari] url to the address ARI itself is served at.",
                status,
            )
        detail = _error_detail(resp)
        if channel_id is not None and status in _CHANNEL_GONE_STATUSES:
            raise ChannelNotFound(
                f"Channel {channel_id} is gone or no longer in Stasis "
                f"({method} {path}: {status} {detail}).",
                channel_id,
                status,
            )
        if status == 401:
            raise AriAuthError(
                f"Asterisk refused the ARI username or password (ari.conf) "
                f"for user {self._username!r} at {self._base}.",
                status,
            )
        if status == 403:
            raise AriAuthError(
                f"ARI user {self._username!r} may not change anything at {self._base} "
                f"(set read_only = no in ari.conf): {detail}.",
                status,
            )
        if status >= 500:
            raise AriUnavailable(
                f"ARI at {self._base} failed with {status} {detail} ({method} {path}).", status
            )
        raise AriError(f"ARI rejected {method} {path} with {status} {detail}.", status)

    def _json_object(self, resp: Reply | None, what: str) -> dict[str, Any]:
        assert resp is not None
        try:
            data = json.loads(resp.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AriError(f"ARI at {self._base} answered {what} with something not a JSON object.")
        return data


def _error_detail(resp: Reply) -> str:
    """Asterisk's own error text: {"message": "..."} or the start of the body."""
    try:
        body = json.loads(resp.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text: str = body["message"]
    else:
        text = resp.body.decode("utf-8", "replace").strip() or resp.reason or ""
    return text[:_DETAIL_LIMIT]


def _basic_auth(username: str, password: str) -> str:
    # As requests did: Latin-1 (what Asterisk's ari.conf compares byte for byte),
    # UTF-8 for a password Latin-1 cannot hold.
    raw = f"{username}:{password}"
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        data = raw.encode("utf-8")
    return "Basic " + base64.b64encode(data).decode("ascii")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps: requests -> urllib3 -> socket errors."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None))
        stack.extend(e for e in (*linked, *current.args) if isinstance(e, BaseException))


def _describe_failure(exc: BaseException, timeout: tuple[float, float]) -> str:
    """What went wrong, as the end of a sentence that starts "ARI at URL ..."."""
    connecting = isinstance(exc, ConnectFailed)
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return handshake_problem(cause)
    if any(isinstance(e, TimeoutError) for e in causes):
        if connecting:
            return f"did not accept a connection within {timeout[0]:g} s"
        return f"did not answer within {timeout[1]:g} s"
    if any(isinstance(e, socket.gaierror) for e in causes):
        return "could not be found (the host name does not resolve)"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "refused the connection (is Asterisk running, with http.conf enabled?)"
    if any(isinstance(e, http.client.RemoteDisconnected) for e in causes):
        return "closed the connection without answering"
    root = exc.__cause__ if connecting and exc.__cause__ is not None else exc
    return f"could not be reached ({type(root).__name__})"
