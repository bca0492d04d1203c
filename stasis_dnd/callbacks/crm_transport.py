"""How the CRM client reaches the CRM: its keep-alive pool (the URL's login as
basic auth, the environment's proxy, the CA bundle trusted over https), and
the reason a failed exchange gives, found without the wrapper's text (which,
for GET, holds the password)."""

from __future__ import annotations

import base64
import http.client
import os
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from stasis_dnd import __version__
from stasis_dnd.http_pool import HttpPool, environment_proxy
from stasis_dnd.settings import CrmSettings
from stasis_dnd.tls import client_tls_context, system_ca


def crm_pool(settings: CrmSettings, endpoint: str) -> HttpPool:
    """The pool to the CRM's `endpoint`; ValueError (one sentence) if it cannot be made."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("invalid [crm] url")
    headers = {"User-Agent": f"stasis-dnd/{__version__}"}
    if settings.method == "post":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if parts.username is not None:
        # A login in the URL goes as HTTP basic auth, as requests sent it.
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(_latin1(login)).decode()
    tls = None
    if parts.scheme == "https":
        bundle = settings.ca_bundle
        if not bundle and system_ca() is True:
            bundle = env_ca_bundle()  # only where the system has no CAs
        try:
            tls = client_tls_context(bundle)
        except ValueError as exc:
            raise ValueError(f"TLS: {exc}") from None
    return HttpPool(
        endpoint,
        headers=headers,
        # The pool's defaults; each request passes the timeouts of its call.
        connect_timeout=settings.timeout,
        read_timeout=settings.timeout,
        maxsize=1,
        tls=tls,
        proxy=environment_proxy(endpoint),
    )


def _latin1(text: str) -> bytes:
    # As requests encoded it; UTF-8 for a login Latin-1 cannot hold.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def env_ca_bundle() -> str:
    """The CA bundle the environment names, as requests read it (REQUESTS_CA_BUNDLE,
    then CURL_CA_BUNDLE): trusted where the system has no CAs of its own."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or ""


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it wraps (its cause; in urllib3's, its `reason`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nested = getattr(current, "reason", None)
        if isinstance(nested, BaseException):
            current = nested
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__


def _text(args: tuple[object, ...]) -> bool:
    return bool(args) and isinstance(args[0], str)


def root_reason(exc: BaseException) -> str:
    """The innermost OS-level reason ("Connection refused"), not a wrapper's
    text with the URL (which, for GET, holds the password)."""
    reason = type(exc).__name__
    for current in chain(exc):
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if "SSL" in type(current).__name__ and current.args:
            reason = str(current.args[-1])
        # A str is the reason; IncompleteRead's bytes are the answer's start.
        elif isinstance(current, http.client.HTTPException) and _text(current.args):
            reason = current.args[0]  # e.g. "Remote end closed connection without response"
    return reason
