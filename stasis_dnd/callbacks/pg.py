"""Connections to the shared PostgreSQL database (`[outbox] url`): psycopg
loaded only when one is configured, libpq's timeouts set so an unreachable
server cannot hang anyone for long, and a failed connection turned into one
sentence naming what to fix, never with the password.

    db = connect_settings(settings.outbox)   # autocommit; raises OutboxError
    holder = connect_settings(settings.outbox, waiting=True)  # may block on a lock
    where = safe_url(settings.outbox.url)    # for logs: no password
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stasis_dnd.callbacks.outbox import OutboxError
from stasis_dnd.settings import OutboxSettings

if TYPE_CHECKING:
    import psycopg

INSTALL_HINT = "install python3-psycopg (or pip install stasis-dnd[postgresql])"
# A database that does not answer must not hold a caller, or shutdown, for long.
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT_MS = 10_000
LOCK_TIMEOUT_MS = 2_000
# Unacknowledged data on a dead link fails the socket after this long (Linux).
TCP_USER_TIMEOUT_MS = 10_000
# A client that hangs inside a transaction does not keep its row locks for ever.
IDLE_IN_TRANSACTION_MS = 30_000


def psycopg_module() -> Any:
    try:
        import psycopg  # optional: only a configured [outbox] url needs it
    except ImportError:
        raise OutboxError(f"[outbox] url is set but psycopg is missing: {INSTALL_HINT}") from None
    return psycopg


def safe_url(url: str) -> str:
    """The database's address for messages and logs: user, host, port and
    database, never a password (which may be in the userinfo or the query)."""
    psycopg = psycopg_module()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def connect(
    url: str, password: str, where: str, *, waiting: bool = False
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection, or OutboxError (`where`: the URL to name in
    it). `waiting`: no statement or lock timeout, for a session that blocks on
    purpose (an advisory lock). What the URL sets itself is kept."""
    psycopg = psycopg_module()
    given = _url_params(url)
    statement, lock = (0, 0) if waiting else (STATEMENT_TIMEOUT_MS, LOCK_TIMEOUT_MS)
    ours = (
        f"-c statement_timeout={statement} -c lock_timeout={lock}"
        f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
    )
    defaults: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "stasis-dnd",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }
    params = {name: value for name, value in defaults.items() if name not in given}
    # The URL's own options come after ours: the later -c wins (a search_path, say).
    params["options"] = f"{ours} {given.get('options', '')}".strip()
    if password:
        params["password"] = password
    try:
        return psycopg.connect(url, autocommit=True, **params)  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise OutboxError(connect_failure(str(exc), where, password)) from None


def _url_params(url: str) -> dict[str, Any]:
    psycopg = psycopg_module()
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(url))
    except psycopg.Error:
        return {}  # psycopg.connect names what is wrong with it


def connect_failure(text: str, where: str, password: str = "") -> str:
    """One sentence for a failed connection (libpq's words), naming what to fix."""
    if password:
        text = text.replace(password, "***")
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (
            f"the database server refused the login for {where}: check the user and"
            " [outbox] password (or password_file)"
        )
    if "does not exist" in lowered and "database" in lowered:
        return f"the database of {where} does not exist: create it (createdb) or fix [outbox] url"
    if "role" in lowered and "does not exist" in lowered:
        return f"the user of {where} does not exist on the server: fix [outbox] url"
    if any(
        sign in lowered
        for sign in (
            "connection refused",
            "timeout expired",
            "resolve host",
            "could not translate",
            "no route",
        )
    ):
        return (
            f"cannot reach the database server of {where}: is PostgreSQL running and"
            " listening there (host, port in [outbox] url)?"
        )
    return f"cannot connect to {where}: {first_line(text)}"


def first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def connect_settings(
    settings: OutboxSettings, *, waiting: bool = False
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to `[outbox] url` (with `[outbox] password`
    when set), or OutboxError with one sentence; `waiting`: see `connect`."""
    return connect(settings.url, settings.password, safe_url(settings.url), waiting=waiting)
