"""Two servers, one PostgreSQL outbox, on a real Asterisk 22: two app names
on the sandbox stand in for the apps of two Asterisk servers. The same number
through both within the dedupe window files one request; a request stored by
one that is then killed while the CRM is down is delivered by the other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from app_kit import CALL_TIMEOUT, RunningApp, new_app_name, start_app, write_config
from e2e_kit import Ari

from stasis_dnd.settings import OutboxSettings
from stasis_dnd.testing.crm_emulator import CrmEmulator

pytestmark = pytest.mark.e2e

NUMBER = "+79005550401"


def server(
    asterisk: Ari, emulator: CrmEmulator, folder: Path, outbox: OutboxSettings
) -> RunningApp:
    """The app of one 'server': its own app name, the shared outbox."""
    folder.mkdir()
    name = new_app_name()
    config = write_config(folder, asterisk, emulator, name)
    # [outbox] is the file's last section: the shared database goes there.
    config.write_text(config.read_text() + f"url = {outbox.url}\npassword = {outbox.password}\n")
    return start_app(config, name, folder / "app.log")


def caller_of(asterisk: Ari, app: RunningApp, cleanup: Callable[[str], str]) -> str:
    """A caller in `app`'s queue who presses 1 in the menu (the read-back is
    then confirmed by silence)."""
    variables = {"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"}
    return cleanup(asterisk.originate_caller("press1after5", number=NUMBER, variables=variables))


def test_the_same_number_through_two_servers_files_one_request(
    asterisk: Ari,
    emulator: CrmEmulator,
    tmp_path: Path,
    postgres_outbox: OutboxSettings,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    first = server(asterisk, emulator, tmp_path / "a", postgres_outbox)
    second = server(asterisk, emulator, tmp_path / "b", postgres_outbox)
    try:
        one = caller_of(asterisk, first, cleanup_channels)
        first.wait_log("event=callback_stored")
        two = caller_of(asterisk, second, cleanup_channels)
        for app, caller in ((first, one), (second, two)):
            assert asterisk.wait_gone(caller, CALL_TIMEOUT), caller
            app.wait_log(f"event=call channel={caller} ")
        assert "outcome=callback" in first.call_line(one)
        # The second server's caller hears "already registered": nothing new is filed.
        second.wait_log("event=callback_duplicate")
        assert emulator.wait_for(lambda c: c.delivered_phones() == [NUMBER])
    finally:
        assert first.stop() == 0, first.log_text()
        assert second.stop() == 0, second.log_text()
    assert emulator.delivered_phones() == [NUMBER]


def test_a_request_of_a_killed_server_is_delivered_by_the_other(
    asterisk: Ari,
    emulator: CrmEmulator,
    tmp_path: Path,
    postgres_outbox: OutboxSettings,
    cleanup_channels: Callable[[str], str],
) -> None:
    emulator.clear()
    first = server(asterisk, emulator, tmp_path / "a", postgres_outbox)
    second = server(asterisk, emulator, tmp_path / "b", postgres_outbox)
    emulator.outage()
    try:
        caller_of(asterisk, first, cleanup_channels)
        first.wait_log("event=callback_stored")
        first.process.kill()  # the whole server is lost
        first.process.wait(timeout=10)
        emulator.restore()
        # The CRM is back: the surviving server delivers what the dead one stored.
        assert emulator.wait_for(lambda c: c.delivered_phones() == [NUMBER], timeout=90)
        second.wait_log("event=callback_delivered")
    finally:
        emulator.restore()
        assert second.stop() == 0, second.log_text()
    assert emulator.delivered_phones() == [NUMBER]
