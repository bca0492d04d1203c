"""Command-line options more than one subcommand takes."""

from __future__ import annotations

import argparse
import os

DEFAULT_CONFIG = "/etc/stasis-dnd/stasis-dnd.ini"


def add_config(parser: argparse.ArgumentParser) -> None:
    """--config FILE, defaulting to $STASIS_DND_CONFIG or DEFAULT_CONFIG."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get("STASIS_DND_CONFIG", DEFAULT_CONFIG),
        help=f"INI file (default: $STASIS_DND_CONFIG or {DEFAULT_CONFIG})",
    )
