"""A delivering instance in a process of its own, for the PostgreSQL
outbox tests: `python pg_deliverer.py OUTBOX_URL CRM_URL CRM_TIMEOUT`, the
database password in PGPASSWORD. It says `ready` once it delivers, and
prints how many requests it delivered when its stdin is closed."""

from __future__ import annotations

import os
import sys

from callbacks_kit import PASSWORD

from stasis_dnd.callbacks.intake import CallbackService
from stasis_dnd.settings import CrmSettings, OutboxSettings


def main(outbox_url: str, crm_url: str, timeout: str) -> int:
    service = CallbackService(
        CrmSettings(url=crm_url, username="dnd", password=PASSWORD, timeout=float(timeout)),
        OutboxSettings(url=outbox_url, password=os.environ["PGPASSWORD"]),
        poll_interval=0.05,
    )
    service.start(deliver=True)
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    service.stop(timeout=10)
    print(service.stats().delivered, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
