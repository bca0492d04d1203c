"""`stasis-dnd run` against the fake Asterisk: callers, faults, restarts."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import requests
from harness import ARI_PASSWORD, CRM_PASSWORD, AppProcess, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import (
    CALLER_HUNG_UP,
    CONTINUED,
    HUNGUP_BY_APP,
    FakeAsterisk,
    FakeCall,
    hang_up,
    key_in,
    press,
)

PROMPT = "sound:custom/IVR_DND_OPERATORS"
GOODBYE = "sound:vm-goodbye"
SORRY = "sound:sorry-youre-having-problems"
CONFIRMED = "sound:custom/IVR_DND_CALLBACK_CONFIRMED"


def readback(number: str) -> str:
    """The read-back of `number`: one playback of three media."""
    digits = "".join(f"sound:digits/{digit}," for digit in number.lstrip("+"))
    return f"sound:custom/IVR_DND_READBACK,{digits}sound:custom/IVR_DND_READBACK_MENU"


READBACK = "sound:custom/IVR_DND_READBACK"
ENTRY = "sound:custom/IVR_DND_ENTER_NUMBER"


def press_and_confirm(after: float = 0.1) -> list[tuple[object, ...]]:
    """Press 1 into the menu prompt, then 1 as soon as the read-back starts."""
    return press("1", after=after) + key_in("1", after_media=READBACK)


def confirm_now(call: FakeCall, fake: FakeAsterisk) -> None:
    """Press 1 now, then 1 again once the read-back has started."""
    heard = len(call.media_heard())
    call.press("1")
    fake.wait_until(lambda: READBACK in " ".join(call.media_heard()[heard:]), 10, "the read-back")
    call.press("1")


def test_caller_presses_1_and_the_crm_gets_the_request(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    call = fake.place_call(
        "+7 (900) 123-45-67", state="Ring", script=press("1", after=0.3) + press("1", after=0.3)
    )
    assert call.wait_done(20) == HUNGUP_BY_APP
    assert call.answered
    assert call.media_heard() == [PROMPT, readback("+79001234567"), CONFIRMED, GOODBYE]
    assert call.heard[0].outcome == "stopped"
    assert call.heard[1].outcome == "stopped"  # the confirming key stops the read-back
    assert crm.wait_for(lambda c: len(c.delivered()) == 1)
    assert crm.delivered_phones() == ["+79001234567"]
    app.wait_log(f"event=call channel={call.id} caller=+79*******67 outcome=callback")


def test_silence_and_wrong_key(fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess) -> None:
    silent = fake.place_call("+79001112233")
    wrong = fake.place_call("+79001112244", script=press("5", when="playback_end"))
    assert silent.wait_done(30) == HUNGUP_BY_APP
    assert wrong.wait_done(30) == HUNGUP_BY_APP
    assert silent.media_heard() == [PROMPT, SORRY, GOODBYE]
    assert wrong.media_heard() == [PROMPT, SORRY, GOODBYE]
    app.wait_log("outcome=timeout")
    app.wait_log("outcome=invalid")
    assert crm.requests == []


def test_caller_hangs_up_at_every_stage_without_errors(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    during_prompt = fake.place_call("+79000000001", script=hang_up(0.3, when="playback_start"))
    during_wait = fake.place_call("+79000000002", script=hang_up(0.5, when="playback_end"))
    after_one = fake.place_call(
        "+79000000003", script=[*press_and_confirm(0.2), ("wait_media", CONFIRMED), ("hangup",)]
    )
    for call in (during_prompt, during_wait, after_one):
        assert call.wait_done(20) == CALLER_HUNG_UP
    app.wait_log("event=call", count=3)
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79000000003"])
    # No stray commands after the hang-up, no error lines.
    for call in (during_prompt, during_wait, after_one):
        hangup_at = next(e.at for e in call.events if e.type == "ChannelHangupRequest")
        assert [r for r in call.requests if r.at > hangup_at and r.status < 400] == []
    noisy = [line for line in app.lines() if "level=WARNING" in line or "level=ERROR" in line]
    assert noisy == []


def test_socket_dropped_mid_call_is_recovered(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    call = fake.place_call("+79001234567", script=[])
    fake.wait_until(lambda: PROMPT in call.media_heard(), 10, "the prompt")
    assert fake.drop_connections() == 1
    app.wait_log("event=ari_connected", count=2)
    app.wait_log(f"event=recovered channel={call.id}")
    # The restarted flow plays the menu again; the caller now presses 1.
    fake.wait_until(lambda: call.media_heard().count(PROMPT) == 2, 10, "the prompt again")
    confirm_now(call, fake)
    assert call.wait_done(20) == HUNGUP_BY_APP
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])


def test_killed_app_recovers_parked_calls_on_restart(
    fake: FakeAsterisk, crm: CrmEmulator, config: Path
) -> None:
    first = AppProcess(config).start()
    fake.wait_connected(20)
    waiting = fake.place_call("+79001230001")
    pressed = fake.place_call("+79001230002", script=press_and_confirm())
    fake.wait_until(lambda: PROMPT in waiting.media_heard(), 10, "the first prompt")
    first.wait_log("event=callback_stored")
    first.kill()
    # The second caller already has a stored request: only goodbye is left.
    second = AppProcess(config).start()
    try:
        assert waiting.wait_done(30) == HUNGUP_BY_APP
        assert pressed.wait_done(30) == HUNGUP_BY_APP
        second.wait_log("event=recovered", count=2)
        assert waiting.media_heard().count(PROMPT) == 2  # the menu started again
        # A claim the killed process held expires after one lease (2 x [crm] timeout + 5 s).
        assert crm.wait_for(lambda c: c.delivered_phones()[:1] == ["+79001230002"], 40)
    finally:
        assert second.stop() == 0
    # At least once: a kill between the CRM's "ok" and recording it sends the
    # request again, under the same id.
    assert set(crm.delivered_phones()) == {"+79001230002"}
    assert len(set(crm.delivered_ids())) == 1


def test_slow_rest_for_one_call_does_not_delay_the_others(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    slow = fake.place_call("+79009999999", script=[])
    fake.wait_until(lambda: len(slow.requests) > 0, 10, "the slow call's first request")
    fake.set_rest_delay(10.0, channel_id=slow.id)
    answered = len(slow.requests)  # a request is recorded once it is answered
    slow.press("1")  # its stop + goodbye now take 10 s each
    fake.wait_until(
        lambda: fake.requests_arrived(slow.id) > answered, 5, "the slow call's delayed request"
    )
    others = [fake.place_call(f"+7900000{n:04d}") for n in range(20)]
    fake.wait_until(lambda: all(PROMPT in c.media_heard() for c in others), 9, "20 prompts playing")
    # Served while the slow call's request was still unanswered, not after it.
    assert len(slow.requests) == answered, "other callers waited for the slow one"
    assert not slow.done
    fake.set_rest_delay(0.0, channel_id=slow.id)
    for call in others:
        call.hang_up()


def test_sigterm_drains_calls_then_continues_them(
    fake: FakeAsterisk, crm: CrmEmulator, config: Path
) -> None:
    app = AppProcess(config).start()
    fake.wait_connected(20)
    quick = fake.place_call("+79001110001", script=press_and_confirm())
    stuck = fake.place_call("+79001110002", script=[])
    fake.wait_until(lambda: PROMPT in stuck.media_heard(), 10, "the prompt")
    app.wait_log("event=callback_stored")  # quick's: it hears the confirmation now
    app.signal(signal.SIGTERM)
    app.wait_log("event=stopping")
    late = fake.place_call("+79001110003")  # arrives during the drain
    # The confirmation and goodbye outlast the 3 s drain: the dialplan says goodbye.
    assert quick.wait_done(20) == CONTINUED
    continued = [r for r in quick.requests if r.path.endswith("/continue")]
    assert [(r.query.get("context"), r.query.get("extension")) for r in continued] == [
        ("dnd-fallback", "hang")
    ]
    assert late.wait_done(20) == CONTINUED
    assert late.media_heard() == []
    assert app.process is not None and app.process.wait(timeout=30) == 0
    # The silent caller got sorry + goodbye within the drain, or was continued.
    assert stuck.wait_done(5) in (HUNGUP_BY_APP, CONTINUED)
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001110001"])


def test_junk_messages_are_logged_and_skipped(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    fake.send_raw("this is not json")
    fake.send_raw('{"type": "StasisStart", "channel": {"id": 42}}')
    fake.send_raw('{"type": "ChannelDtmfReceived", "digit": "1", "channel": {"id": "nobody"}}')
    fake.send_raw('{"type": "SomethingNew"}')
    fake.send_raw("[1, 2, 3]")
    call = fake.place_call("+79001234567", script=press_and_confirm())
    assert call.wait_done(20) == HUNGUP_BY_APP
    app.wait_log("event=bad_message", count=3)
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001234567"])


def test_wrong_ari_password_is_one_clear_line(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    config = write_config(tmp_path, fake, crm)
    config.write_text(config.read_text().replace("ari-Secret-4711", "Wr0ng-Passw0rd"))
    app = AppProcess(config).start()
    assert app.process is not None
    assert app.process.wait(timeout=20) == 1
    out = app.text()
    assert "Traceback" not in out
    assert "Wr0ng-Passw0rd" not in out
    assert "password" in out.lower()


def test_metrics_endpoint(tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, fake, crm, f"[metrics]\nlisten = 127.0.0.1:{port}\n")
    app = AppProcess(config).start()
    try:
        fake.wait_connected(20)
        call = fake.place_call("+79001234567", script=press_and_confirm())
        assert call.wait_done(20) == HUNGUP_BY_APP
        app.wait_log("event=call channel=")
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'stasis_dnd_calls_total{outcome="callback"} 1.0' in text
        assert 'stasis_dnd_callback_requests_total{result="stored"} 1.0' in text
        assert "stasis_dnd_ari_connected 1.0" in text
        assert "stasis_dnd_active_calls 0.0" in text  # a finished call leaves nothing behind
        assert "stasis_dnd_event_to_command_seconds_count" in text
        assert "stasis_dnd_callbacks_dead_total 0.0" in text  # the outbox's, from its stats
        assert ARI_PASSWORD not in text and CRM_PASSWORD not in text
    finally:
        assert app.stop() == 0


def test_a_second_instance_takes_over_and_the_first_waits_for_the_name(
    fake: FakeAsterisk, crm: CrmEmulator, config: Path
) -> None:
    first = AppProcess(config).start()
    fake.wait_connected(20)
    first.wait_log("event=ari_connected")
    parked = fake.place_call("+79001230009", script=[])
    fake.wait_until(lambda: PROMPT in parked.media_heard(), 10, "the prompt")
    second = AppProcess(config).start()  # both write to the same log file
    try:
        first.wait_log("event=app_replaced")
        first.wait_log(f"event=recovered channel={parked.id} ")
        # The newcomer took the parked call over; the first did not touch it.
        confirm_now(parked, fake)
        assert parked.wait_done(30) == HUNGUP_BY_APP
        assert crm.wait_for(lambda c: c.delivered_phones() == ["+79001230009"])
        # The first stays up, waiting for the name, and does not take it back.
        first.wait_log("event=app_name_held")
        assert first.process is not None and first.process.poll() is None
        assert fake.counters()["ws_connections"] == 2
        # SIGTERM while waiting: nothing to drain, exit status 0.
        assert first.stop(timeout=10) == 0
        assert "drain=none (another process holds the app name)" in first.text()
    finally:
        assert second.stop() == 0


def test_hidden_number_keys_one_in_and_the_crm_gets_exactly_it(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    entry = "sound:custom/IVR_DND_NO_NUMBER,sound:custom/IVR_DND_ENTER_NUMBER"
    script = (
        press("1") + key_in("4951234567#", after_media=ENTRY) + key_in("1", after_media=READBACK)
    )
    call = fake.place_call("anonymous", script=script)
    assert call.wait_done(30) == HUNGUP_BY_APP
    assert call.media_heard() == [PROMPT, entry, readback("4951234567"), CONFIRMED, GOODBYE]
    assert crm.wait_for(lambda c: c.delivered_phones() == ["4951234567"])
    # No caller id worth sending: the CRM gets the number to call only.
    assert "callerId" not in dict(crm.delivered()[0].params)


def test_another_number_reaches_the_crm_with_the_callers_own(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    call = fake.place_call(
        "+79001234567",
        script=press("1")
        + key_in("2", after_media=READBACK)
        + key_in("84951234567#", after_media=ENTRY)
        + key_in("1", after_media=READBACK),
    )
    assert call.wait_done(30) == HUNGUP_BY_APP
    assert readback("84951234567") in call.media_heard()
    assert crm.wait_for(lambda c: c.delivered_phones() == ["84951234567"])
    assert dict(crm.delivered()[0].params)["callerId"] == "+79001234567"


def test_a_second_request_within_the_dedupe_window_is_told_it_is_registered(
    fake: FakeAsterisk, crm: CrmEmulator, app: AppProcess
) -> None:
    first = fake.place_call("+79005550001", script=press_and_confirm())
    assert first.wait_done(30) == HUNGUP_BY_APP
    again = fake.place_call("+79005550001", script=press_and_confirm())
    assert again.wait_done(30) == HUNGUP_BY_APP
    assert again.media_heard()[-2:] == ["sound:custom/IVR_DND_ALREADY_REQUESTED", GOODBYE]
    assert crm.wait_for(lambda c: c.delivered_phones() == ["+79005550001"])
    app.wait_log("outcome=already_requested")
