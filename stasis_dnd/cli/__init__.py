"""The `stasis-dnd` command: run, check, check-config, outbox, install-sounds, demo."""

from stasis_dnd.cli.main import main

__all__ = ["main"]
