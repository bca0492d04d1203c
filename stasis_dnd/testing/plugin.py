"""pytest plugin (installed with the package): the `ivr` fixture, and the
PostgreSQL ones of `testing.pg_fixtures` (a cluster started only when asked for).

def test_press_1(ivr):
    call = ivr.call(number="+7 900 123-45-67")
    call.expect_prompt()
    call.press("1")
    call.expect_callback("+79001234567")
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stasis_dnd.settings import IvrSettings
from stasis_dnd.testing.conversation import Conversation
from stasis_dnd.testing.pg_fixtures import postgres, postgres_outbox, postgres_url

__all__ = ["IvrKit", "ivr", "postgres", "postgres_outbox", "postgres_url"]


class IvrKit:
    """Starts conversations with shared IVR settings."""

    def __init__(self, settings: IvrSettings | None = None) -> None:
        self.settings = settings or IvrSettings()

    def configure(self, **changes: Any) -> IvrSettings:
        """Change IVR settings (as `[ivr]` keys) for the calls started after this."""
        self.settings = replace(self.settings, **changes)
        return self.settings

    def call(self, **options: Any) -> Conversation:
        """Start a call; options are those of `Conversation`."""
        return Conversation(self.settings, **options)


@pytest.fixture
def ivr() -> IvrKit:
    """A fresh conversation kit with the default IVR settings."""
    return IvrKit()
