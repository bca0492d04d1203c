"""Two instances with one app name on a real Asterisk 22: the second replaces
the first, which hands its calls over and waits; once the second is stopped
(Ctrl-C) the first takes the name back and serves callers again."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from app_kit import CALL_TIMEOUT, RunningApp, new_app_name, start_app, write_config
from e2e_kit import Ari

from stasis_dnd.runtime.app_name import NAME_CONFIRM, NAME_WAIT_CAP
from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

# The first's looks back off to a minute at most, and a free name is looked at twice.
TAKE_BACK = NAME_WAIT_CAP + 2 * NAME_CONFIRM + 20


def test_a_replaced_instance_takes_the_name_back_when_the_other_stops(
    asterisk: Ari,
    emulator: CrmEmulator,
    tmp_path: Path,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    name = new_app_name()
    running: list[RunningApp] = []

    def launch(label: str) -> RunningApp:
        # Each its own folder (outbox, log); the same Asterisk, user and app name.
        folder = tmp_path / label
        folder.mkdir()
        config = write_config(folder, asterisk, emulator, name)
        running.append(start_app(config, name, folder / "app.log"))
        return running[-1]

    def caller(number: str) -> str:
        channel = asterisk.originate_caller(
            "press1after4", number=number, variables={"DND_APP": name, "DND_QUEUE_TIMEOUT": "1"}
        )
        return cleanup_channels(channel)

    try:
        first = launch("first")
        second = launch("second")
        first.wait_log("event=app_replaced", timeout=20)
        # The first closed its socket; the name stays with the second.
        served_by_second = caller("+79001230001")
        second.wait_log(f"event=call channel={served_by_second}")
        assert "outcome=callback" in second.call_line(served_by_second)
        first.wait_log("event=app_name_held")
        assert f"channel={served_by_second}" not in first.log_text()

        second.process.send_signal(signal.SIGINT)  # Ctrl-C: drains, then exits
        assert second.process.wait(timeout=30) == 0, second.log_text()
        # What Asterisk 22 answers for an app that nobody holds and no channel is in.
        assert asterisk.request("GET", f"applications/{name}").status_code == 404

        first.wait_log("event=app_name_free", timeout=TAKE_BACK)
        first.wait_log("event=ari_connected", after=first.log_text().index("event=app_name_free"))
        served_by_first = caller("+79001230002")
        first.wait_log(f"event=call channel={served_by_first}")
        assert "outcome=callback" in first.call_line(served_by_first)
        assert emulator.wait_for(
            lambda c: {"+79001230001", "+79001230002"} <= set(c.delivered_phones()), CALL_TIMEOUT
        )
        # Replaced once, never the other way round: no tug of war.
        assert first.log_text().count("event=app_replaced") == 1
        assert "event=app_replaced" not in second.log_text()
        assert first.log_text().count("event=ari_connected") == 2
    finally:
        for app in running:
            if app.process.poll() is None:
                assert app.stop() == 0, app.log_text()
