"""Faults around the app's life and its link to Asterisk, with `stasis-dnd run`
as a process: SIGKILL mid-call before and after a stored callback, Asterisk
restarted with the calls kept or lost, a WebSocket that silently stalls, and
REST requests for one channel timing out."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_kit import GOODBYE, PROMPT, SORRY, App, outbox_rows, requested, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import (
    CALLER_HUNG_UP,
    HUNGUP_BY_APP,
    STASIS_FAILED,
    FakeAsterisk,
    press,
)

Launch = Callable[..., App]


@pytest.mark.sounds(prompt=3.0, goodbye=3.0)
def test_sigkill_before_and_after_storing_each_request_is_delivered_once(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    crm.outage()  # so the stored request is still pending when the app dies
    config = write_config(tmp_path, fake, crm)
    first = launch(config, label="first")
    choosing = fake.place_call("+79001230001", script=[])
    stored = fake.place_call("+79001230002", script=press("1", after=0.1))
    first.wait_log("event=callback_stored")
    fake.wait_until(lambda: GOODBYE in stored.media_heard(), 10, "goodbye for the stored one")
    # Both callers are mid-prompt: one in the menu, one hearing goodbye.
    first.kill()
    assert not choosing.done and not stored.done
    [stored_id] = first.request_ids()

    crm.restore()
    second = launch(config, label="second")
    second.wait_log("event=recovered", count=2)
    fake.wait_until(lambda: choosing.media_heard().count(PROMPT) == 2, 10, "the menu again")
    choosing.press("1")
    assert choosing.wait_done(20) == HUNGUP_BY_APP
    assert stored.wait_done(20) == HUNGUP_BY_APP
    # The caller with a stored request was not asked again: goodbye, not the menu.
    assert stored.media_heard().count(PROMPT) == 1
    assert stored.media_heard()[-1] == GOODBYE
    assert f"event=recovered channel={stored.id} callback_stored=True" in second.text()

    [chosen_id] = second.request_ids()
    assert crm.wait_for(lambda c: len(c.delivered()) == 2, 30)
    assert second.stop() == 0
    sent = collections.Counter(r.request_id for r in crm.requests)
    assert sent == {stored_id: 1, chosen_id: 1}
    assert {(r.param("aon"), r.request_id) for r in crm.delivered()} == {
        ("+79001230002", stored_id),
        ("+79001230001", chosen_id),
    }
    rows = outbox_rows(tmp_path / "outbox.sqlite3")
    assert [(r["request_id"], r["state"]) for r in rows] == [
        (stored_id, "delivered"),
        (chosen_id, "delivered"),
    ]


@pytest.mark.sounds(goodbye=3.0)
def test_sigkill_after_delivery_sends_nothing_again(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake, crm)
    outbox = tmp_path / "outbox.sqlite3"
    first = launch(config, label="first")
    call = fake.place_call("+79001230003", script=press("1", after=0.1))
    first.wait_log("event=callback_stored")
    # Delivered and recorded as delivered (not only answered by the CRM).
    fake.wait_until(
        lambda: [r["state"] for r in outbox_rows(outbox)] == ["delivered"], 10, "delivered"
    )
    assert not call.done  # still hearing goodbye
    first.kill()

    second = launch(config, label="second")
    second.wait_log("pending=0")
    assert call.wait_done(20) == HUNGUP_BY_APP
    assert call.media_heard().count(PROMPT) == 1
    assert call.media_heard()[-1] == GOODBYE
    assert second.stop() == 0
    assert [r.request_id for r in crm.requests] == first.request_ids()


@pytest.mark.sounds(prompt=2.0, goodbye=2.0)
def test_asterisk_restart_that_keeps_the_calls(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    app = launch(write_config(tmp_path, fake, crm))
    silent = fake.place_call("+79001230004", script=[])
    pressed = fake.place_call("+79001230005", script=press("1", after=0.1))
    app.wait_log("event=callback_stored")
    fake.stop_server()  # Asterisk's HTTP server goes away; the channels stay
    during = fake.place_call("+79001230006")  # Stasis() fails: the dialplan serves it
    app.wait_log("event=ari_disconnected")
    fake.start_server()
    app.wait_log("event=ari_connected", count=2)
    assert during.wait_done(1) == STASIS_FAILED
    assert silent.wait_done(20) == HUNGUP_BY_APP
    assert silent.media_heard()[-2:] == [SORRY, GOODBYE]
    assert pressed.wait_done(20) == HUNGUP_BY_APP
    assert SORRY not in pressed.media_heard()
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001230005"])
    assert fake.channels_in_app() == []


@pytest.mark.sounds(prompt=3.0, goodbye=3.0)
def test_asterisk_restart_that_ends_every_call(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    app = launch(write_config(tmp_path, fake, crm))
    calls = [fake.place_call(f"+7900123001{n}", script=[]) for n in range(3)]
    pressed = fake.place_call("+79001230020", script=press("1", after=0.1))
    app.wait_log("event=callback_stored")
    fake.wait_until(lambda: all(PROMPT in c.media_heard() for c in calls), 10, "3 prompts")
    fake.stop_server()
    for call in [*calls, pressed]:
        call.hang_up()  # a real restart ends every call; the app hears nothing of it
        assert call.wait_done(5) == CALLER_HUNG_UP
    fake.start_server()
    app.wait_log("event=ari_connected", count=2)
    # On reconnect the app learns they are gone and forgets them.
    for call in [*calls, pressed]:
        app.wait_log(f"event=call channel={call.id} ")
    assert app.count("ending=caller_gone") == 4
    # The request stored before the restart is still delivered, once.
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001230020"])
    after = fake.place_call("+79001230021", script=press("1", after=0.1))
    assert after.wait_done(20) == HUNGUP_BY_APP
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001230020", "+79001230021"])


def test_a_caller_arriving_while_recovery_asks_asterisk_is_kept(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    app = launch(write_config(tmp_path, fake, crm))
    # Asterisk answers late: the list of channels in the app is out of date on arrival.
    fake.set_rest_delay(2.0)
    fake.drop_connections()
    app.wait_log("event=ari_connected", count=2)
    fake.wait_connected(10)
    newcomer = fake.place_call("+79001230050", script=[])  # after the list was made
    fake.wait_until(lambda: PROMPT in newcomer.media_heard(), 10, "the newcomer's prompt")
    fake.set_rest_delay(0.0)
    # Not taken for a caller who left while the socket was down: served to the end.
    assert newcomer.wait_done(20) == HUNGUP_BY_APP
    assert newcomer.media_heard() == [PROMPT, SORRY, GOODBYE]
    assert "ending=caller_gone" not in app.text()


@pytest.mark.sounds(prompt=2.0)
def test_a_silently_stalled_websocket_is_noticed_and_replaced(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    app = launch(write_config(tmp_path, fake, crm))
    parked = fake.place_call("+79001230030", script=[])
    fake.wait_until(lambda: PROMPT in parked.media_heard(), 10, "the prompt")
    fake.stall()  # no close, no data, pings unanswered
    # Keepalive: a ping after 2 s of quiet, 3 s for an answer; generously bounded.
    app.wait_log("reason='no answer to a ping within 3 s'", timeout=15)
    fake.unstall()
    app.wait_log("event=ari_connected", count=2, timeout=15)
    assert parked.wait_done(30) == HUNGUP_BY_APP
    assert parked.media_heard()[-2:] == [SORRY, GOODBYE]
    call = fake.place_call("+79001230031", script=press("1", after=0.1))
    assert call.wait_done(20) == HUNGUP_BY_APP
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001230031"])
    assert fake.channels_in_app() == []


def test_rest_timing_out_for_one_channel_leaves_the_others_alone(
    fake: FakeAsterisk, crm: CrmEmulator, launch: Launch, tmp_path: Path
) -> None:
    app = launch(write_config(tmp_path, fake, crm, {"ari": {"read_timeout": 1}}))
    slow = fake.place_call("+79001230040", script=[])
    fake.wait_until(lambda: PROMPT in slow.media_heard(), 10, "the slow call's prompt")
    fake.set_rest_delay(5.0, channel_id=slow.id)  # each answer 5 s late: past the 1 s timeout
    slow.press("1")
    others = [fake.place_call(f"+790012301{n:02d}", script=press("1")) for n in range(10)]
    for call in others:
        assert call.wait_done(20) == HUNGUP_BY_APP
        assert call.media_heard() == requested(call.number)
    # Each of the slow channel's steps takes 5 s at the fake: it is still going.
    assert not slow.done
    assert slow.wait_done(30) == HUNGUP_BY_APP  # timed out, not left parked
    phones = {"+79001230040", *(c.number for c in others)}
    assert crm.wait_for(lambda c: set(c.delivered_phones()) == phones)
    timeouts = [line for line in app.warnings() if "did not answer within 1 s" in line]
    assert timeouts
    assert all(f"channel={slow.id} " in line for line in timeouts)
    assert fake.channels_in_app() == []
