"""The soak's quick form (bench/soak.py --quick) as a CI test: 300 calls
with CRM failures, a CRM outage, two WebSocket cuts and a SIGKILL; nothing
lost, nothing doubled, nobody parked, memory flat. The full form runs by hand:
`python bench/soak.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_quick_soak_loses_nothing() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(result.stdout, result.stderr)  # the figures, in the test's output
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: nothing lost, nothing doubled, nobody parked" in result.stdout
    assert "calls left parked: 0" in result.stdout
