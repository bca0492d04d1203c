"""Where a call goes when it leaves the app, and what survives when the outbox
cannot help: `stasis-dnd run` against the fake Asterisk.

- A caller whose request is stored and who is still hearing goodbye when the
  drain ends is continued to the dialplan's goodbye step, not its menu.
- A request sent to the CRM directly (the outbox was locked) is marked on the
  channel, so the app started again after a SIGKILL plays goodbye, not the menu.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_kit import CONFIRMED, GOODBYE, PROMPT, App, readback, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import CONTINUED, HUNGUP_BY_APP, FakeAsterisk, press

Launch = Callable[..., App]


def continues(call: object) -> list[dict[str, str]]:
    """The queries of the app's successful `continue` requests for this call."""
    return [
        r.query
        for r in getattr(call, "requests", [])
        if r.path.endswith("/continue") and r.status < 300
    ]


@pytest.mark.sounds(prompt=3.0, goodbye=30.0)
def test_drain_sends_a_stored_caller_to_goodbye_and_a_choosing_one_to_the_menu(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake, crm, {"ari": {"drain_timeout": "1s"}})
    app = launch(config)
    choosing = fake.place_call("+79001240001", script=[])
    stored = fake.place_call("+79001240002", script=press("1", after=0.1))
    fake.wait_until(lambda: GOODBYE in stored.media_heard(), 10, "goodbye for the stored one")
    fake.wait_until(lambda: PROMPT in choosing.media_heard(), 10, "the menu")
    assert app.stop() == 0  # SIGTERM: drain 1 s, then back to the dialplan
    assert stored.wait_done(10) == CONTINUED
    assert choosing.wait_done(10) == CONTINUED
    # A second "1" in the dialplan's menu would file a second request.
    assert continues(stored) == [{"context": "dnd-fallback", "extension": "hang", "priority": "1"}]
    assert continues(choosing) == [{"context": "dnd-fallback", "extension": "s", "priority": "1"}]
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001240002"])


@pytest.mark.sounds(goodbye=4.0)
def test_a_request_sent_directly_survives_a_sigkill(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    config = write_config(tmp_path, fake, crm, {"outbox": {"write_timeout": "0.3s"}})
    first = launch(config, label="first")
    first.wait_log("event=outbox_opened")
    holder = sqlite3.connect(outbox, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # nothing can be stored now
    try:
        call = fake.place_call("+79001240003", script=press("1", after=0.1))
        first.wait_log("event=callback_sent_directly")
        fake.wait_until(lambda: GOODBYE in call.media_heard(), 10, "goodbye")
        first.kill()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    second = launch(config, label="second")
    second.wait_log(f"event=recovered channel={call.id} callback_stored=True")
    assert call.wait_done(40) == HUNGUP_BY_APP
    # Goodbye again, not the menu: the caller already has a callback coming.
    heard = [PROMPT, readback("+79001240003"), CONFIRMED, GOODBYE, GOODBYE]
    assert call.media_heard() == heard
    assert second.stop() == 0
    assert crm.delivered_phones() == ["+79001240003"]
    assert len(crm.requests) == 1
