"""The HTTP client for BGCRM / BGERP: files one callback request and says how
it went, as a value (the CRM's side: docs/crm-contract.md).

Both endpoint styles are spoken: `dynamic` (`/admin/dynamic.do?action=
runDynamicClass`, BGCRM and BGERP before build 1392) and `run`
(`/admin/run.do?method=runClass&iface=event`). Every parameter is
form-encoded (a `+` in the number arrives as `+`), `responseType=json` and
`authToSession=0` are always sent, a parameter named `callback` never is.
POST is the default so the credentials stay out of the CRM's access log.
The password never appears in a log line, an exception or a repr. Each
answer says whether no request could have got through (`crm_wide`: pause
them all) or the CRM failed on this one (back off this one only).

The transport is the app's keep-alive pool (`stasis_dnd.http_pool`, shared
with ARI): the environment's proxy (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
NO_PROXY) and CA bundle are read once, when the client is made; redirects
are never followed.
"""

from __future__ import annotations

import enum
import http.client
import json
import re
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlencode, urlsplit

from stasis_dnd.callbacks.crm_transport import chain, crm_pool, root_reason
from stasis_dnd.core.context import clean
from stasis_dnd.http_pool import ConnectFailed, HttpPool
from stasis_dnd.logs import strip_userinfo
from stasis_dnd.settings import CRM_METHODS, CRM_STYLES, CrmSettings, breaks_crm_answer

# An answer is a few hundred bytes; anything much larger is not BGERP's.
DEFAULT_BODY_LIMIT = 64 * 1024
# The CRM's error message may be a whole Java stack trace.
MESSAGE_LIMIT = 300

# What requests leaves unquoted in a URL's path (letters, digits and _.-~ always are).
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"  # pragma: no mutate: letters added are never quoted
_PASSWORD_IN_URL = re.compile(r"(j_password=)[^&\s'\"]*")
_MIN_SECRET_MASK = 4

_ENDPOINTS = {
    "dynamic": ("/admin/dynamic.do", (("action", "runDynamicClass"),)),
    "run": ("/admin/run.do", (("method", "runClass"), ("iface", "event"))),
}
# Names the client sets itself; an extra parameter must not override them.
_RESERVED = frozenset(
    {
        "action",
        "method",
        "iface",
        "class",
        "responseType",
        "authToSession",
        "j_username",
        "j_password",
        "callback",
    }
)


class CrmOutcome(enum.Enum):
    """How one attempt to file a request went."""

    DELIVERED = "delivered"  # HTTP 200 and {"status": "ok"}
    # The CRM as a whole cannot take any request (`CrmResult.crm_wide`):
    BAD_CREDENTIALS = "bad_credentials"  # HTTP 401, or the HTML login page
    UNAVAILABLE = "unavailable"  # no connection (refused, DNS, connect timeout, TLS), 429
    # The CRM got this request and answered it badly (may be this request's doing):
    REFUSED = "refused"  # HTTP 200 and {"status": "error"}: the class failed
    FAILED = "failed"  # 5xx, 408, no answer in time, connection cut after sending
    BAD_ANSWER = "bad_answer"  # not JSON, too large, JSONP, 3xx, other 4xx


# Failures no single request can cause: delivery pauses for all of them.
CRM_WIDE = frozenset({CrmOutcome.BAD_CREDENTIALS, CrmOutcome.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class CrmResult:
    """The outcome of one attempt, with a short reason for the log."""

    outcome: CrmOutcome
    detail: str = ""
    status: int | None = None  # the HTTP status, when there was an answer

    @property
    def delivered(self) -> bool:
        return self.outcome is CrmOutcome.DELIVERED

    @property
    def crm_wide(self) -> bool:
        """True when no request could have got through (pause them all)."""
        return self.outcome in CRM_WIDE

    def __str__(self) -> str:
        return f"{self.outcome.value}: {self.detail}" if self.detail else self.outcome.value


def check_settings(settings: CrmSettings) -> None:
    """Raise ValueError (one sentence) if the settings cannot make a valid request."""
    if settings.style not in CRM_STYLES:
        raise ValueError(f"[crm] style must be one of {', '.join(CRM_STYLES)}")
    if settings.method not in CRM_METHODS:
        raise ValueError(f"[crm] method must be one of {', '.join(CRM_METHODS)}")
    if not settings.phone_param:
        raise ValueError("[crm] phone_param must name the parameter for the caller's number")
    names = (settings.phone_param, settings.request_id_param, settings.callerid_param)
    own = {name for name in names if name}
    if settings.sub:
        own.add("sub")
    for name in names:
        if breaks_crm_answer(name) or name in _RESERVED:
            raise ValueError(f"[crm] parameter name {name!r} is used by the CRM protocol itself")
    for name, _ in settings.params:
        if breaks_crm_answer(name):
            raise ValueError("[crm] params: a parameter named callback breaks the CRM's answer")
        if name in _RESERVED or name in own:
            raise ValueError(f"[crm] params: {name!r} is already sent by stasis-dnd")
    for name, _ in settings.context_params:
        if name in _RESERVED or name in own:
            raise ValueError(f"[crm] context_params: {name!r} is already sent by stasis-dnd")


class CrmClient:
    """Files callback requests over one keep-alive HTTP connection.

    `send()` never raises for anything the network or the CRM does; it
    returns a `CrmResult`. Not meant to be shared by threads (one per thread).
    """

    def __init__(
        self,
        settings: CrmSettings,
        *,
        timeout: float | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        check_settings(settings)
        self.settings = settings
        self.timeout = timeout if timeout is not None else settings.timeout
        self.body_limit = body_limit
        path, self._endpoint_params = _ENDPOINTS[settings.style]
        self._endpoint = settings.url.rstrip("/") + path
        # For logs and repr: a `user:password@` in the configured URL stays out.
        self.url = strip_userinfo(self._endpoint)
        # Quoted where it must be, as requests did (a space in the path is %20).
        self._path = quote(urlsplit(self._endpoint).path, _PATH_SAFE)
        self._pool: HttpPool | None = None
        # Why no request can be made (a URL or CA file that cannot be used).
        self._unusable = ""  # pragma: no mutate: read only when there is no pool
        try:
            self._pool = crm_pool(settings, self._endpoint)
        except ValueError as exc:
            self._unusable = str(exc)
        # The secret as it may appear in text: raw, and form/URL-encoded. A very
        # short one is not masked on its own (it would mangle every message).
        password = settings.password
        self._secrets = {
            text
            for text in (
                password,
                quote_plus(password),
                # Letters are never quoted: any safe="..." of letters is the same.
                quote(password, safe=""),  # pragma: no mutate
            )
            if len(text) >= _MIN_SECRET_MASK
        }

    def __repr__(self) -> str:
        return f"CrmClient(url={self.url!r}, username={self.settings.username!r})"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def params(
        self,
        phone: str,
        request_id: str = "",
        caller_id: str = "",
        context: tuple[tuple[str, str], ...] = (),
        shape: CrmSettings | None = None,
    ) -> list[tuple[str, str]]:
        """Every parameter of one request, in the order sent (with the password).
        `caller_id`: the caller's own number, when it is not `phone`; else "".
        `context`: (fact, value) pairs, sent under the names `[crm] context_params`
        gives them; a fact without a value is not sent. `shape`: a profile's
        [crm] settings for what is sent (the login stays this client's)."""
        s = shape or self.settings
        pairs = [*self._endpoint_params, ("class", s.class_name)]
        if s.sub:
            pairs.append(("sub", s.sub))
        pairs.append((s.phone_param, phone))
        if s.callerid_param and caller_id:
            pairs.append((s.callerid_param, caller_id))
        pairs.extend(s.params)
        facts = dict(context)
        for name, fact in s.context_params:
            # Cleaned again here: an outbox row may come from another version.
            value = clean(facts.get(fact, ""))
            if value:
                pairs.append((name, value))
        if s.request_id_param and request_id:
            pairs.append((s.request_id_param, request_id))
        pairs += [
            ("responseType", "json"),
            ("authToSession", "0"),
            ("j_username", self.settings.username),
            ("j_password", self.settings.password),
        ]
        return pairs

    def send(
        self,
        phone: str,
        request_id: str = "",
        *,
        caller_id: str = "",
        context: tuple[tuple[str, str], ...] = (),
        timeout: float | None = None,
        shape: CrmSettings | None = None,
    ) -> CrmResult:
        """File one callback request for `phone` (with `caller_id`, the caller's
        own number, when it is not "", the facts about the call in `context`,
        and a profile's `shape`, see `params`); never raises for I/O trouble."""
        limit = timeout if timeout is not None else self.timeout
        pairs = self.params(phone, request_id, caller_id, context, shape)
        return self._exchange(pairs, limit)

    def probe(self) -> CrmResult:
        """Log in at the endpoint naming no class, so nothing is filed: a BGCRM/BGERP
        that accepts the login answers JSON (`status` error, no class to run)."""
        s = self.settings
        pairs = [
            *self._endpoint_params,
            ("responseType", "json"),
            ("authToSession", "0"),
            ("j_username", s.username),
            ("j_password", s.password),
        ]
        return self._exchange(pairs, self.timeout)

    def _exchange(self, pairs: list[tuple[str, str]], limit: float) -> CrmResult:
        if self._pool is None:
            return CrmResult(CrmOutcome.UNAVAILABLE, self._unusable)
        post = self.settings.method == "post"
        try:
            form = urlencode(pairs)
        except UnicodeError:
            # e.g. a lone surrogate from a JSON escape: nothing the CRM could receive.
            return CrmResult(CrmOutcome.BAD_ANSWER, "the request cannot be encoded as UTF-8")
        # Never followed (the pool does not): a redirect would turn the POST into a
        # GET with the password in the URL.
        target = self._path if post else f"{self._path}?{form}"
        try:
            with self._pool.exchange(
                "POST" if post else "GET",
                target,
                body=form.encode() if post else None,
                timeouts=(limit, limit),
            ) as response:
                return self._classify(response, deadline=time.monotonic() + limit)
        except (OSError, http.client.HTTPException) as exc:
            return self._failure(exc)

    # --- reading the answer -------------------------------------------------------

    def _classify(self, response: http.client.HTTPResponse, deadline: float) -> CrmResult:
        status = response.status
        if status == 401:
            return CrmResult(CrmOutcome.BAD_CREDENTIALS, "HTTP 401 (login failed)", status)
        if status == 429:
            # A rate limit is about all our requests, not this one: everyone waits.
            return CrmResult(CrmOutcome.UNAVAILABLE, "HTTP 429 (too many requests)", status)
        if status >= 500 or status == 408:
            # The CRM (or a proxy before it) failed on this request; the next may pass.
            return CrmResult(CrmOutcome.FAILED, f"HTTP {status}", status)
        if not 200 <= status < 300:
            where = response.headers.get(
                "Location",  # pragma: no mutate: the headers ignore case
                "",  # pragma: no mutate: None is as empty
            )
            extra = f" to {self._trim(where)}" if where else ""
            return CrmResult(CrmOutcome.BAD_ANSWER, f"HTTP {status}{extra}", status)
        raw = self._read_capped(response, deadline)
        if raw is None:
            return CrmResult(
                CrmOutcome.BAD_ANSWER, f"answer larger than {self.body_limit} bytes", status
            )
        text = raw.decode(
            "utf-8",  # pragma: no mutate: the default codec
            errors="replace",
        ).strip()
        try:
            document = json.loads(text)
        except ValueError:
            return self._not_json(text, response, status)
        if not isinstance(document, dict):
            return CrmResult(CrmOutcome.BAD_ANSWER, "answer is JSON but not an object", status)
        answer = document.get("status")
        message = self._trim(str(document.get("message") or ""))
        if answer == "ok":
            return CrmResult(CrmOutcome.DELIVERED, "", status)
        if answer == "error":
            return CrmResult(CrmOutcome.REFUSED, message or "the CRM reported an error", status)
        return CrmResult(CrmOutcome.BAD_ANSWER, f"unexpected status {answer!r}", status)

    def _not_json(self, text: str, response: http.client.HTTPResponse, status: int) -> CrmResult:
        lowered = text[:4096].lower()
        if "j_password" in lowered or 'type="password"' in lowered:
            return CrmResult(
                CrmOutcome.BAD_CREDENTIALS, "the CRM answered with its login page", status
            )
        if re.match(r"[\w$.]+\(", text):
            return CrmResult(CrmOutcome.BAD_ANSWER, "answer is JSONP, not JSON", status)
        kind = response.headers.get(
            "Content-Type",  # pragma: no mutate: the headers ignore case
            "unknown type",
        )
        return CrmResult(CrmOutcome.BAD_ANSWER, f"answer is not JSON ({self._trim(kind)})", status)

    def _read_capped(self, response: http.client.HTTPResponse, deadline: float) -> bytes | None:
        """The body, or None when it is larger than the limit (read no further)."""
        # pragma: no mutate start, as it only saves reading a body the loop below refuses too
        declared = response.headers.get("Content-Length", "")
        # pragma: no mutate end
        if declared.isdigit() and int(declared) > self.body_limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(8192):  # pragma: no mutate: read size only
            size += len(chunk)
            if size > self.body_limit:
                return None
            chunks.append(chunk)
            # The read timeout is per read: a trickling answer needs a cap too. (No
            # mutants: > and >= differ at one instant; _failure drops the message.)
            # pragma: no mutate start
            if time.monotonic() > deadline:
                raise TimeoutError("the answer took too long")
            # pragma: no mutate end
        if response.length:  # the server closed before the Content-Length it declared
            raise http.client.HTTPException("the answer ended before its Content-Length")
        return b"".join(chunks)

    # --- describing failures without secrets --------------------------------------

    def _failure(self, exc: OSError | http.client.HTTPException) -> CrmResult:
        if isinstance(exc, ConnectFailed):
            return self._not_connected(exc.__cause__ or exc)
        reason = self._trim(root_reason(exc))
        if any(isinstance(e, ssl.SSLError) for e in chain(exc)):
            return CrmResult(CrmOutcome.UNAVAILABLE, "TLS: " + reason)
        if isinstance(exc, TimeoutError):
            # Sent but not answered in time: this request may be what the CRM chokes on.
            return CrmResult(CrmOutcome.FAILED, "no answer in time")
        # The connection broke after the request went out (reset, closed mid-answer).
        return CrmResult(CrmOutcome.FAILED, reason)

    def _not_connected(self, cause: BaseException) -> CrmResult:
        """No connection, so no request got through: `cause` says why."""
        reason = self._trim(root_reason(cause))
        if any(isinstance(e, ssl.SSLError) for e in chain(cause)):
            return CrmResult(CrmOutcome.UNAVAILABLE, "TLS: " + reason)
        if isinstance(cause, TimeoutError):
            return CrmResult(CrmOutcome.UNAVAILABLE, f"no connection within {self.timeout:g}s")
        if isinstance(cause, OSError) and not cause.strerror and cause.args:
            # The proxy's answer to CONNECT, e.g. "Tunnel connection failed: 403 Forbidden".
            return CrmResult(CrmOutcome.UNAVAILABLE, self._trim(str(cause)))
        return CrmResult(CrmOutcome.UNAVAILABLE, reason)

    def _trim(self, text: str) -> str:
        """One line, at most MESSAGE_LIMIT characters, without the password."""
        text = _PASSWORD_IN_URL.sub(r"\1***", " ".join(text.split()))
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
