"""The README's main command, `scripts/demo`, runs green on the sandbox."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_kit import Ari

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_live_demo_places_every_call_as_expected(asterisk: Ari) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "sandbox" / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every call ended as expected" in result.stdout
    assert "Traceback" not in result.stderr
