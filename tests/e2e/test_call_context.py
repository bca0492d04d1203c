"""Facts about the call reach the CRM, on a real Asterisk 22: the queue,
reason, seconds waited, dialled number and linkedid that
extensions.conf.sample passes as Stasis() arguments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from app_kit import CALL_TIMEOUT, new_app_name, start_app, write_config
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

MAPPING = "queue=queue&reason=reason&waited=waited_seconds&line=dialled&call_id=linkedid"
QUEUE_SECONDS = 3


def test_a_caller_from_the_queue_files_a_request_with_its_facts(
    asterisk: Ari,
    emulator: CrmEmulator,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    name = new_app_name()
    config = write_config(tmp_path, asterisk, emulator, name)
    text = config.read_text().replace("[outbox]", f"context_params = {MAPPING}\n[outbox]")
    config.write_text(text)
    app = start_app(config, name, tmp_path / "app.log")
    try:
        # Out of the queue with TIMEOUT after 3 s, then 1 pressed during the menu.
        caller = cleanup_channels(
            asterisk.originate_caller(
                f"press1after{QUEUE_SECONDS + 2}",
                number="+79001234567",
                variables={
                    "DND_APP": name,
                    "DND_QUEUE_TIMEOUT": str(QUEUE_SECONDS),
                    "FROM_DID": "4951234567",
                },
            )
        )
        linked = asterisk.request(
            "GET", f"channels/{caller}/variable", params={"variable": "CHANNEL(linkedid)"}
        )
        linkedid = linked.json()["value"]
        assert linkedid, linked.text
        assert emulator.wait_for(lambda c: len(c.requests) >= 1, timeout=CALL_TIMEOUT)
        assert asterisk.wait_gone(caller, CALL_TIMEOUT)
    finally:
        assert app.stop() == 0, app.log_text()
    [received] = emulator.requests
    assert received.param("aon") == "+79001234567"
    assert received.param("queue") == "999"
    assert received.param("reason") == "TIMEOUT"
    assert received.param("line") == "4951234567"
    assert received.param("call_id") == linkedid
    waited = int(received.param("waited") or "-1")
    assert abs(waited - QUEUE_SECONDS) <= 1, waited
