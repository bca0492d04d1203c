"""A fake Asterisk for tests and benchmarks: ARI over HTTP + WebSocket on
loopback, behaving as Asterisk 22 does for the calls this app handles, with
scripted callers, per-call records and faults on demand.

    from stasis_dnd.testing.fake_asterisk import FakeAsterisk, press

    with FakeAsterisk("user", "secret", "stasis-dnd") as fake:
        ...
        call = fake.place_call("+79001234567", script=press("1", after=0.5))
        assert call.wait_done() == "hungup_by_app"

Also a standalone server: `python -m stasis_dnd.testing.fake_asterisk --help`.
"""

from stasis_dnd.testing.fake_asterisk.calls import (
    CALLER_HUNG_UP,
    CONTINUED,
    HUNGUP_BY_APP,
    STASIS_FAILED,
    STILL_IN_APP,
    FakeCall,
    Heard,
    Latency,
    RestRequest,
    SentEvent,
)
from stasis_dnd.testing.fake_asterisk.pbx import (
    DEFAULT_SOUNDS,
    DIGIT_SOUNDS,
    PREVIOUS_SOUNDS,
    READBACK_SOUNDS,
)
from stasis_dnd.testing.fake_asterisk.script import Step, hang_up, key_in, press
from stasis_dnd.testing.fake_asterisk.server import FakeAsterisk

__all__ = [
    "CALLER_HUNG_UP",
    "CONTINUED",
    "DEFAULT_SOUNDS",
    "DIGIT_SOUNDS",
    "HUNGUP_BY_APP",
    "PREVIOUS_SOUNDS",
    "READBACK_SOUNDS",
    "STASIS_FAILED",
    "STILL_IN_APP",
    "FakeAsterisk",
    "FakeCall",
    "Heard",
    "Latency",
    "RestRequest",
    "SentEvent",
    "Step",
    "hang_up",
    "key_in",
    "press",
]
