"""Waiting for the ARI app name after another process took it.

Asterisk routes an app's calls to one WebSocket: a second connection with the
same app name replaces the first, which gets `ApplicationReplaced` (and, on
Asterisk 22, stays open but receives nothing more). The replaced instance
hands its calls over and looks, with back-off, whether anybody still holds
the name. Asterisk keeps an app while a WebSocket holds it or channels are
still parked in it, and answers `GET /applications/{app}` with 404 once
neither is left; only then does the replaced instance connect again. So two
instances never take the name from each other in turn: whoever was replaced
waits until the other has gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stasis_dnd.ari.rest import AriError, AriRest
from stasis_dnd.backoff import Backoff
from stasis_dnd.guard import ThreadErrors
from stasis_dnd.metrics import Metrics

log = logging.getLogger("stasis_dnd")

# Looks at the name: within 2 s at first, then up to 4, 8, ... 60 s (full jitter).
NAME_WAIT_BASE = 2.0
NAME_WAIT_CAP = 60.0
# A holder whose socket dropped reconnects within its back-off cap (5 s): the
# name counts as free only when two looks this far apart both find no app.
NAME_CONFIRM = 6.0


def wait_for_name(
    rest: AriRest,
    app: str,
    *,
    wait: Callable[[float], bool],
    backoff: Backoff,
    confirm: float,
    metrics: Metrics,
    errors: ThreadErrors,
) -> bool:
    """Look until the app name is free (True) or `wait(seconds)` returns True
    because the app is stopping (False)."""
    free_once = False
    held_logged = False
    failure_logged = False
    while True:
        delay = confirm if free_once else backoff.next_delay()
        if wait(delay):
            return False
        try:
            rest.application(app)
        except AriError as error:
            if error.status == 404:
                metrics.name_checks.labels("free").inc()
                if free_once:
                    log.info("event=app_name_free app=%s (nobody holds it; reconnecting)", app)
                    return True
                free_once = True
                log.debug("event=app_name_free app=%s (looking again in %.0f s)", app, confirm)
                continue
            metrics.name_checks.labels("failed").inc()
            level = logging.DEBUG if failure_logged else logging.WARNING
            failure_logged = True
            log.log(level, "event=app_name_check_failed app=%s error=%r (waiting)", app, str(error))
        except Exception as error:
            metrics.name_checks.labels("failed").inc()
            errors.caught("app-name-wait", error)
        else:
            metrics.name_checks.labels("held").inc()
            level = logging.DEBUG if held_logged else logging.INFO
            held_logged = True
            log.log(
                level,
                "event=app_name_held app=%s (another process holds it; next look within %.3g s)",
                app,
                backoff.ceiling(),
            )
        free_once = False
