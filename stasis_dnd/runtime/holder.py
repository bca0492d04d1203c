"""Electing one holder among instances that serve the same Asterisk and app name.

ARI routes an app's calls to one WebSocket, so of several instances for one
Asterisk only one may connect. With a shared PostgreSQL database (`[outbox]
url`) they elect that one with a session-level advisory lock: whoever holds
it connects the event socket; the others poll for it (standby). PostgreSQL
releases the lock when the holder's session ends (process killed, connection
lost), and a standby takes it within `POLL`.

Two sockets must never fight over the name, so:
- the holder checks its lock session every `CHECK` seconds; a check that
  fails or takes longer than `CHECK_TIMEOUT` counts as the lock lost, and the
  holder closes its socket at once (`on_lost`);
- the lock session asks the server to end it after `IDLE_SESSION_TIMEOUT`
  without a query, so a holder cut off from the database has given up its
  socket before the server frees the lock;
- a standby that got the lock waits `FENCE` (checking it) before it connects
  (`on_acquired`): longer than a holder whose session the server ended needs
  to notice and close its socket.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit

from prometheus_client import Gauge

log = logging.getLogger("stasis_dnd")

# A standby asks for the lock this often.
POLL = 1.0
# The holder checks its lock session this often, and gives up on a check
# that has not answered after CHECK_TIMEOUT.
CHECK = 1.0
CHECK_TIMEOUT = 1.0
# The holder's hand-back of its calls before it closes the socket is cut at
# this (`App`); part of what FENCE must cover.
HAND_BACK = 0.5
# A new holder waits this long before it connects: a holder whose session
# ended notices within CHECK + CHECK_TIMEOUT and closes after HAND_BACK.
FENCE = CHECK + CHECK_TIMEOUT + HAND_BACK + 0.5
# An instance that lost the lock asks again only after this (standbys first).
REJOIN = 3 * POLL
# The server ends a lock session idle this long (the holder queries each CHECK).
IDLE_SESSION_TIMEOUT = 3.0
# Connecting to the database gives up after this many seconds (libpq: whole seconds).
CONNECT_TIMEOUT = 2


class _Watched(Enum):
    """How `Holder._watch` ended other than with a failure's reason."""

    STOPPED = "stopped"
    FENCED = "fenced"


class LockSession(Protocol):
    """One database session that may hold the lock."""

    def try_lock(self) -> bool:
        """Take the lock if nobody holds it; True if this session holds it now."""

    def check(self) -> None:
        """Raise if the session (and with it the lock) is gone."""

    def close(self) -> None: ...


def lock_key(ari_url: str, app: str) -> int:
    """The advisory lock's key: a stable signed 64-bit hash of the Asterisk
    (host:port of `[ari] url`) and the app name."""
    parts = urlsplit(ari_url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    ident = f"stasis-dnd {(parts.hostname or '').lower()}:{port} {app}"
    digest = hashlib.blake2b(ident.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgLockSession:
    """A dedicated PostgreSQL connection for the advisory lock (psycopg 3)."""

    def __init__(self, url: str, password: str, key: int) -> None:
        try:
            import psycopg
            from psycopg.conninfo import make_conninfo
        except ImportError:  # pragma: no cover - the postgresql extra is missing
            raise RuntimeError(
                "[outbox] url needs psycopg: pip install 'stasis-dnd[postgresql]'"
            ) from None
        self._key = key
        # TCP keepalives and tcp_user_timeout: a dead network fails a check
        # within about a second instead of at the kernel's default of minutes.
        conninfo = make_conninfo(
            url,
            password=password or None,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="stasis-dnd lock",
            keepalives=1,
            keepalives_idle=1,
            keepalives_interval=1,
            keepalives_count=2,
            tcp_user_timeout=int(CHECK_TIMEOUT * 1000),
        )
        self._conn: Any = psycopg.connect(conninfo, autocommit=True)
        try:
            self._conn.execute(f"SET statement_timeout = {int(CHECK_TIMEOUT * 1000)}")
            try:
                # PostgreSQL 14 and later: the server frees the lock of a holder cut off from it.
                self._conn.execute(f"SET idle_session_timeout = {int(IDLE_SESSION_TIMEOUT * 1000)}")
            except psycopg.errors.UndefinedObject:
                log.debug("event=lock_session detail='no idle_session_timeout (before 14)'")
        except BaseException:
            self._conn.close()
            raise

    def try_lock(self) -> bool:
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        return bool(row and row[0])

    def check(self) -> None:
        self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._conn.close()


class Holder:
    """The election loop in a thread of its own: polls for the lock while
    standby, calls `on_acquired` (after FENCE) once it holds it, checks it
    while holding and calls `on_lost` when it is gone, then polls again."""

    def __init__(
        self,
        app: str,
        open_session: Callable[[], LockSession],
        *,
        on_acquired: Callable[[], None],
        on_lost: Callable[[], None],
        gauge: Gauge | None = None,
        poll: float = POLL,
        check: float = CHECK,
        check_timeout: float = CHECK_TIMEOUT,
        fence: float = FENCE,
        rejoin: float = REJOIN,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.app = app
        self._open = open_session
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._gauge = gauge
        self.poll = poll
        self.check = check
        self.check_timeout = check_timeout
        self.fence = fence
        self.rejoin = rejoin
        self._stop = threading.Event()
        # Sleeps `seconds`; True: stop. Tests pass their own to record the intervals.
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None
        self._session: LockSession | None = None
        self._holding = False
        self._unreachable_logged = False

    @property
    def holding(self) -> bool:
        return self._holding

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="holder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop and the session: the lock is free for a standby."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close()

    def run(self) -> None:
        """The loop itself, in the calling thread, until `stop()`."""
        while not self._stop.is_set():
            if not self._acquire():
                return
            # The fence is checks too: an idle session would be ended by the server.
            reason = self._watch(checks=math.ceil(self.fence / self.check))
            if reason is _Watched.STOPPED:
                return
            if reason is not _Watched.FENCED:
                log.warning("event=lock_lost app=%s error=%r (before connecting)", self.app, reason)
                self._close()
                continue
            self._set_holding(True)
            log.info("event=holder app=%s (this instance holds the lock; connecting)", self.app)
            self._on_acquired()
            reason = self._watch()
            if reason is _Watched.STOPPED:
                return
            self._set_holding(False)
            log.warning(
                "event=lock_lost app=%s error=%r (closing the event socket; calls in "
                "progress go back to the dialplan; waiting for the lock again)",
                self.app,
                reason,
            )
            self._on_lost()
            self._close()
            # A healthy standby takes it first; this one's connection just failed.
            if self._wait(self.rejoin):
                return

    def _acquire(self) -> bool:
        """Poll until this instance holds the lock (True) or is stopping (False)."""
        standby_logged = False
        while not self._stop.is_set():
            try:
                if self._session is None:
                    self._session = self._open()
                    if self._unreachable_logged:
                        log.info("event=lock_db_reachable app=%s", self.app)
                    self._unreachable_logged = False
                if self._session.try_lock():
                    return True
                if not standby_logged:
                    log.info(
                        "event=standby app=%s (another instance holds the lock; "
                        "asking every %.3g s)",
                        self.app,
                        self.poll,
                    )
                    standby_logged = True
            except Exception as error:
                self._close()
                level = logging.DEBUG if self._unreachable_logged else logging.WARNING
                self._unreachable_logged = True
                log.log(
                    level,
                    "event=lock_db_unreachable app=%s error=%r (not connecting to "
                    "Asterisk until the lock is ours; trying every %.3g s)",
                    self.app,
                    _one_line(error),
                    self.poll,
                )
            if self._wait(self.poll):
                return False
        return False

    def _watch(self, checks: int | None = None) -> str | _Watched:
        """Check the session every `check` until it fails (the reason), `stop()`
        (STOPPED) or `checks` checks have passed (FENCED)."""
        checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lock-check")
        done = 0
        try:
            while checks is None or done < checks:
                done += 1
                if self._wait(self.check):
                    return _Watched.STOPPED
                session = self._session
                if session is None:
                    return "no lock session"
                future: Future[None] = checker.submit(session.check)
                try:
                    future.result(timeout=self.check_timeout)
                except FutureTimeout:
                    # Closed after the hung check, in its thread (libpq is not
                    # safe to close under a query); the server may hold the lock till then.
                    self._session = None
                    checker.submit(session.close)
                    return f"no answer from the database within {self.check_timeout:.3g} s"
                except Exception as error:
                    return _one_line(error)
            return _Watched.FENCED
        finally:
            # A check hanging on a dead network must not hold up the loop.
            checker.shutdown(wait=False)

    def _set_holding(self, holding: bool) -> None:
        self._holding = holding
        if self._gauge is not None:
            self._gauge.set(1 if holding else 0)

    def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception as error:
                log.debug("event=lock_session_close_failed error=%r", str(error))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
