"""Outside business hours on the real Asterisk: with today a closed date and
`outside_hours = announce`, a caller who presses 1 hears the closed message
and goodbye, and the CRM gets nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app_kit import CALL_TIMEOUT, GOODBYE, Observer, new_app_name, start_app, write_config
from e2e_kit import Ari

from stasis_dnd.testing.crm_emulator import CrmEmulator


def test_a_caller_outside_hours_hears_the_closed_message_and_nothing_is_filed(
    asterisk: Ari,
    crm: CrmEmulator,
    observer: Observer,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    name = new_app_name()
    config = write_config(tmp_path, asterisk, crm, name)
    # Yesterday to tomorrow, so a run over midnight is still closed.
    today = datetime.now(UTC).date()
    days = ", ".join(str(today + timedelta(days=step)) for step in (-1, 0, 1))
    config.write_text(
        config.read_text()
        + f"[ivr]\nclosed_dates = {days}\ntimezone = UTC\noutside_hours = announce\n"
    )
    app = start_app(config, name, tmp_path / "app.log")
    try:
        caller = cleanup_channels(
            asterisk.originate_caller(
                "press1after4",
                number="+7 900 123-45-67",
                variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"},
            )
        )
        assert asterisk.wait_gone(caller, CALL_TIMEOUT)
        app.wait_log(f"event=call channel={caller} caller=+79*******67 outcome=closed")
    finally:
        assert app.stop() == 0, app.log_text()
    assert observer.heard(caller) == ["sound:custom/IVR_DND_CLOSED", GOODBYE]
    assert crm.requests == []
