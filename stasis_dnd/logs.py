"""Logging for a service: key=value lines, no timestamps under journald.

journald (and most log collectors) stamp each line themselves, so lines carry
a timestamp only when stdout is a terminal. Callers' numbers are masked.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


def mask_phone(phone: str) -> str:
    """Keep enough of a number to recognise it, not enough to dial it."""
    if len(phone) <= 4:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 5) + phone[-2:]


def quote(value: object) -> str:
    """A value for a key=value line: quoted when it has spaces or quotes."""
    text = str(value)
    if text and not any(c in text for c in ' "=\n\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
