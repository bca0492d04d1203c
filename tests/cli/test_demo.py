"""The README's demo command runs and shows what the caller and the CRM get."""

from __future__ import annotations

import subprocess
import sys


def test_demo_prints_transcripts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stasis_dnd", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    assert "play sound:custom/IVR_DND_OPERATORS" in out
    assert "the CRM gets aon=+79001234567" in out
    assert "outcome: timeout" in out
    # A hidden number keys one in; another caller gives a different number.
    assert "play sound:custom/IVR_DND_NO_NUMBER,sound:custom/IVR_DND_ENTER_NUMBER" in out
    assert "the CRM gets aon=84951234567 (sub" in out
    assert "the CRM gets aon=4951234567 callerId=+79001112233 (sub" in out
    # Every scenario ends: hung up by the app or by the caller.
    assert out.count("ended: still in the app") == 0
