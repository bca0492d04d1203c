"""Logging for a service: key=value lines, no timestamps under journald.

journald (and most log collectors) stamp each line themselves, so lines carry
a timestamp only when stdout is a terminal. Callers' numbers are masked, and
URLs lose their credentials (ARI, the CRM and the event socket log theirs).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit


def mask_phone(phone: str) -> str:
    """Keep enough of a number to recognise it, not enough to dial it."""
    if len(phone) <= 4:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 5) + phone[-2:]


def strip_userinfo(url: str) -> str:
    """`url` without any `user:password@`, so it is safe to log and to connect to."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the app's logs to `stream` (stdout) as `level=... msg` lines."""
    stream = stream or sys.stdout
    stamp = "%(asctime)s " if stream.isatty() else ""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(f"{stamp}level=%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Connection-level chatter of the libraries is not the operator's business.
    for noisy in ("urllib3", "websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
