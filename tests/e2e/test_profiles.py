"""One app for several queues, on a real Asterisk 22: callers of queue 999
(`dnd-queue,s,1`) and of queue 998 (`dnd-queue,998,1`) of
extensions.conf.sample are served by the default profile and by
`[profile:sales]`, each request with its own class, sub and facts; a profile
the dialplan names (`profile=`, over its queue) that is closed now sends its
caller to `[dnd-closed]`, and files nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from app_kit import (
    CALL_TIMEOUT,
    CRM_PASSWORD,
    CRM_USER,
    Observer,
    new_app_name,
    start_app,
    write_config,
)
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import DEFAULT_CLASS

pytestmark = pytest.mark.e2e

SALES_CLASS = "ru.bgcrm.dyn.sales.CallbackIn"
MAPPING = (
    "queue=queue&reason=reason&waited=waited_seconds&line=dialled&call_id=linkedid&profile=profile"
)
CLOSED = ("dnd-closed", "Playback", "custom/IVR_DND_CLOSED")


@pytest.fixture
def crm() -> Iterator[CrmEmulator]:
    # BGERP runs any class it has: the sales profile's too.
    with CrmEmulator(CRM_USER, CRM_PASSWORD, also_classes=(SALES_CLASS,)) as emulator:
        yield emulator
        emulator.check()


def profiles() -> str:
    """[profile:sales] for queue 998; [profile:night], closed all of today."""
    # Three days on: never yesterday, today or tomorrow, so a run over midnight is closed too.
    day = (datetime.now(UTC) + timedelta(days=3)).strftime("%a").lower()
    return (
        f"[profile:sales]\nqueues = 998\nclass = {SALES_CLASS}\nsub = dndsales\n"
        f"[profile:night]\nhours = {day} 00:00-24:00\ntimezone = UTC\n"
        "outside_hours = continue\nclosed_continue_to = dnd-closed,s,1\n"
    )


def test_each_queue_is_served_by_its_profile_and_a_closed_one_continues(
    asterisk: Ari,
    crm: CrmEmulator,
    observer: Observer,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    name = new_app_name()
    config = write_config(tmp_path, asterisk, crm, name, crm_extra=f"context_params = {MAPPING}\n")
    config.write_text(config.read_text() + profiles())
    app = start_app(config, name, tmp_path / "app.log")

    def call(script: str, number: str, extension: str, **variables: str) -> str:
        return cleanup_channels(
            asterisk.originate_caller(
                script, number=number, extension=extension, variables={"DND_APP": name, **variables}
            )
        )

    try:
        # All three at once. Queue 999: out with TIMEOUT after 3 s, 1 pressed in the menu.
        operators = call(
            "press1after5", "+79001110001", "s", DND_QUEUE_TIMEOUT="3", FROM_DID="4951110001"
        )
        # Queue 998: 1 pressed after 4 s of waiting (break-out).
        sales = call(
            "press1after4", "+79001110002", "998", DND_QUEUE_TIMEOUT="60", FROM_DID="4951110002"
        )
        # profile=night wins over queue 998's profile.
        night = cleanup_channels(
            asterisk.originate_caller(
                "silent",
                number="+79001110003",
                variables={"DND_APP": name, "E2E_ARGS": "TIMEOUT,queue=998,profile=night"},
                context="e2e-targets",
                extension="stasis-args",
            )
        )
        linkedids = {}
        for caller in (operators, sales):
            linkedids[caller] = asterisk.variable(caller, "CHANNEL(linkedid)")
            assert linkedids[caller], caller
        assert crm.wait_for(
            lambda c: all(c.requests_for(f"+7900111000{i}") for i in (1, 2)), timeout=CALL_TIMEOUT
        ), crm.requests
        for caller in (operators, sales, night):
            assert asterisk.wait_gone(caller, CALL_TIMEOUT), caller
        app.wait_log(f"event=call channel={night} ")
        assert "outcome=closed" in app.call_line(night)
    finally:
        assert app.stop() == 0, app.log_text()
    assert CLOSED in observer.ran(night), observer.ran(night)
    assert len(crm.requests) == 2, crm.requests  # none for the night caller
    # (phone, class, sub, queue, reason, seconds waited, dialled, caller, profile)
    expected = [
        ("+79001110001", DEFAULT_CLASS, "dndoperator", "999", "TIMEOUT", 3, "4951110001",
         operators, "default"),
        ("+79001110002", SALES_CLASS, "dndsales", "998", "breakout", 4, "4951110002",
         sales, "sales"),
    ]  # fmt: skip
    for phone, class_name, sub, queue, reason, waited, line, caller, profile in expected:
        [received] = crm.requests_for(phone)
        assert received.param("class") == class_name, received.params
        assert received.param("sub") == sub, received.params
        assert received.param("queue") == queue, received.params
        assert received.param("reason") == reason, received.params
        assert abs(int(received.param("waited") or "-1") - waited) <= 1, received.params
        assert received.param("line") == line, received.params
        assert received.param("call_id") == linkedids[caller], received.params
        assert received.param("profile") == profile, received.params
