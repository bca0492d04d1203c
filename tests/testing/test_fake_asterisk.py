"""The fake Asterisk behaves as Asterisk 22 did (docs/asterisk-behaviour.md).

Driven the way the app drives Asterisk: `requests` for ARI REST and
`websocket-client` for the events socket.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
import websocket
from fake_ari_client import (
    APP,
    CLOSED,
    PASSWORD,
    PONG,
    SOUNDS,
    USER,
    WAIT,
    AppClient,
    start_call,
)

from stasis_dnd.testing.fake_asterisk import (
    CALLER_HUNG_UP,
    CONTINUED,
    HUNGUP_BY_APP,
    STASIS_FAILED,
    STILL_IN_APP,
    FakeAsterisk,
    hang_up,
    press,
)


@pytest.fixture
def fake() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(USER, PASSWORD, APP, SOUNDS, dialplan_linger=5.0) as server:
        yield server
        server.check()


@pytest.fixture
def app(fake: FakeAsterisk) -> Iterator[AppClient]:
    client = AppClient(fake)
    fake.wait_connected()
    yield client
    client.close()


# --- auth and the socket --------------------------------------------------------


def test_wrong_credentials_get_401_like_asterisk(fake: FakeAsterisk) -> None:
    for auth in [(USER, "wrong"), ("nobody", PASSWORD), None]:
        reply = requests.get(fake.url + "/ari/asterisk/info", auth=auth, timeout=WAIT)
        assert reply.status_code == 401
        assert reply.json() == {"message": "Authentication required"}
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="Asterisk REST Interface"'
    events = fake.url.replace("http://", "ws://") + f"/ari/events?app={APP}"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(events + f"&api_key={USER}:wrong", timeout=WAIT)
    assert refused.value.status_code == 401
    websocket.create_connection(events + f"&api_key={USER}:{PASSWORD}", timeout=WAIT).close()
    good = requests.get(fake.url + "/ari/asterisk/info", auth=(USER, PASSWORD), timeout=WAIT)
    assert good.status_code == 200
    assert good.json()["system"]["entity_id"]


def test_stasis_fails_while_no_socket_is_connected(fake: FakeAsterisk) -> None:
    call = fake.place_call("+79001112233")
    assert call.wait_done(WAIT) == STASIS_FAILED
    assert fake.counters()["stasis_failed"] == 1
    assert fake.channels_in_app() == []


def test_a_second_socket_replaces_the_first(fake: FakeAsterisk, app: AppClient) -> None:
    second = AppClient(fake)
    try:
        (replaced,) = app.expect("ApplicationReplaced")
        assert replaced["application"] == APP
        fake.place_call()
        second.expect("StasisStart")
        # Asterisk 22 leaves the replaced socket open but sends it nothing more.
        app.ws.ping()
        assert app.next() == PONG
    finally:
        second.close()


def test_the_app_is_known_while_a_socket_holds_it_or_channels_are_parked(
    fake: FakeAsterisk, app: AppClient
) -> None:
    second = AppClient(fake)
    try:
        app.expect("ApplicationReplaced")
        # Closing the replaced socket leaves the name with its new holder.
        app.close()
        fake.place_call()
        second.expect("StasisStart")
        assert app.get(f"/applications/{APP}").status_code == 200
        second.close()
        fake.wait_until(lambda: not fake.connected, WAIT, "the second socket gone")
        parked = app.get(f"/applications/{APP}")
        assert parked.status_code == 200  # a channel still parked keeps the app
        assert len(parked.json()["channel_ids"]) == 1
        [call] = fake.calls()
        call.hang_up()
        fake.wait_until(lambda: fake.channels_in_app() == [], WAIT, "the caller gone")
        # Nobody holds it and nothing is parked: Asterisk has forgotten the app.
        assert app.get(f"/applications/{APP}").status_code == 404
        assert app.get("/applications").json() == []
    finally:
        second.close()


def test_fail_application_fails_the_next_looks_at_the_app(
    fake: FakeAsterisk, app: AppClient
) -> None:
    fake.fail_application(status=503, times=2)
    path = f"/applications/{APP}"
    assert [app.get(path).status_code for _ in range(3)] == [503, 503, 200]
    fake.fail_application(times=None)
    assert app.get(path).status_code == 500
    fake.fail_application(times=0)
    assert app.get(path).status_code == 200


def test_junk_from_the_app_gets_a_rest_response(app: AppClient) -> None:
    app.ws.send("this is not json")
    (reply,) = app.expect("RESTResponse")
    assert reply["status_code"] == 400


def test_send_raw_reaches_the_app_verbatim(fake: FakeAsterisk, app: AppClient) -> None:
    assert fake.send_raw("{not json") == 1
    assert app.next() == {"type": "<raw>", "text": "{not json"}


# --- a call inside the app --------------------------------------------------------


def test_stasis_start_describes_the_caller(fake: FakeAsterisk, app: AppClient) -> None:
    fake.place_call("+79001234567", name="Ivan", state="Ring", language="ru", args=("TIMEOUT",))
    (start,) = app.expect("StasisStart")
    assert start["args"] == ["TIMEOUT"]
    assert start["application"] == APP
    assert start["asterisk_id"] and start["timestamp"].endswith("+0000")
    channel = start["channel"]
    assert channel["caller"] == {"name": "Ivan", "number": "+79001234567"}
    assert (channel["state"], channel["language"]) == ("Ring", "ru")
    assert channel["dialplan"]["app_name"] == "Stasis"
    assert app.get(f"/channels/{channel['id']}").json() == channel


def test_answer_changes_state_once(fake: FakeAsterisk, app: AppClient) -> None:
    channel = start_call(fake, app, state="Ring")
    assert app.post(f"/channels/{channel}/answer").status_code == 204
    (change,) = app.expect("ChannelStateChange")
    assert change["channel"]["state"] == "Up"
    assert app.post(f"/channels/{channel}/answer").status_code == 204
    app.post(f"/channels/{channel}/play/p1", media="sound:short")
    app.expect("PlaybackStarted")  # and no second ChannelStateChange before it


def test_outbound_states_get_412(fake: FakeAsterisk, app: AppClient) -> None:
    channel = start_call(fake, app, state="Ringing")
    reply = app.post(f"/channels/{channel}/answer")
    assert reply.status_code == 412
    assert reply.json() == {"message": "Channel in invalid state"}


def test_play_reports_started_then_done(fake: FakeAsterisk, app: AppClient) -> None:
    channel = start_call(fake, app)
    reply = app.post(f"/channels/{channel}/play/p1", media="sound:short", lang="en")
    assert reply.status_code == 201
    assert reply.json() == {
        "id": "p1",
        "media_uri": "sound:short",
        "target_uri": f"channel:{channel}",
        "language": "en",
        "state": "queued",
    }
    started, finished = app.expect("PlaybackStarted", "PlaybackFinished")
    assert started["playback"]["state"] == "playing"
    assert finished["playback"]["state"] == "done"
    assert app.delete("/playbacks/p1").status_code == 404


def test_unknown_sound_is_accepted_then_fails(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    assert app.post(f"/channels/{channel}/play/p1", media="sound:no-such").status_code == 201
    _, finished = app.expect("PlaybackStarted", "PlaybackFinished")
    assert finished["playback"]["state"] == "failed"
    assert call.heard[0].outcome == "failed"
    assert app.get("/sounds/no-such").status_code == 404


def test_second_play_waits_for_the_first(fake: FakeAsterisk, app: AppClient) -> None:
    channel = start_call(fake, app)
    app.post(f"/channels/{channel}/play/p1", media="sound:short")
    app.post(f"/channels/{channel}/play/p2", media="sound:short")
    assert app.get("/playbacks/p2").json()["state"] == "queued"
    events = app.expect(
        "PlaybackStarted", "PlaybackFinished", "PlaybackStarted", "PlaybackFinished"
    )
    assert [e["playback"]["id"] for e in events] == ["p1", "p1", "p2", "p2"]


def test_answer_queued_behind_a_prompt_returns_when_it_ends(
    fake: FakeAsterisk, app: AppClient
) -> None:
    call = fake.place_call(state="Ring")
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:short")
    assert app.post(f"/channels/{channel}/answer").status_code == 204
    assert call.event_types()[-3:] == ["PlaybackStarted", "PlaybackFinished", "ChannelStateChange"]


def test_stopping_a_playback_ends_it_done(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:prompt")
    app.expect("PlaybackStarted")
    assert app.delete("/playbacks/p1").status_code == 204
    (finished,) = app.expect("PlaybackFinished")
    assert finished["playback"]["state"] == "done"
    assert app.delete("/playbacks/p1").json() == {"message": "Playback not found"}
    assert call.heard[0].outcome == "stopped"


def test_dtmf_does_not_stop_the_prompt(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:prompt")
    app.expect("PlaybackStarted")
    call.press("1")
    (dtmf,) = app.expect("ChannelDtmfReceived")
    assert (dtmf["digit"], dtmf["duration_ms"], dtmf["channel"]["id"]) == ("1", 100, channel)
    assert app.get("/playbacks/p1").json()["state"] == "playing"


def test_continue_leaves_the_app_and_then_409(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:short")
    assert app.post(f"/channels/{channel}/continue").status_code == 204
    # continue waits for the queued prompt, as Asterisk's command queue does
    app.expect("PlaybackStarted", "PlaybackFinished", "StasisEnd")
    assert call.wait_done(WAIT) == CONTINUED
    for reply in [
        app.post(f"/channels/{channel}/answer"),
        app.post(f"/channels/{channel}/play/p2", media="sound:short"),
        app.post(f"/channels/{channel}/continue"),
    ]:
        assert reply.status_code == 409
        assert reply.json() == {"message": "Channel not in Stasis application"}
    assert app.get(f"/channels/{channel}").status_code == 200  # still in the dialplan
    assert app.delete(f"/channels/{channel}").status_code == 204
    assert app.get(f"/channels/{channel}").status_code == 404
    assert app.nothing_within(0.2)  # no events after StasisEnd


def test_app_hangup_order(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:prompt")
    app.post(f"/channels/{channel}/play/p2", media="sound:short")
    app.expect("PlaybackStarted")
    assert app.delete(f"/channels/{channel}", reason="bogus").status_code == 400
    assert app.delete(f"/channels/{channel}").status_code == 204
    request, p1_end, p2_start, p2_end, _ = app.expect(
        "ChannelHangupRequest", "PlaybackFinished", "PlaybackStarted", "PlaybackFinished",
        "StasisEnd",
    )  # fmt: skip
    assert (request["cause"], request["soft"]) == (32, True)
    assert (p1_end["playback"]["id"], p1_end["playback"]["state"]) == ("p1", "failed")
    assert p2_start["playback"]["id"] == p2_end["playback"]["id"] == "p2"
    assert p2_end["playback"]["state"] == "failed"
    assert call.wait_done(WAIT) == HUNGUP_BY_APP
    assert app.nothing_within(0.2)  # no ChannelDestroyed for a dialplan caller
    for reply in [
        app.get(f"/channels/{channel}"),
        app.post(f"/channels/{channel}/answer"),
        app.post(f"/channels/{channel}/play/p3", media="sound:short"),
        app.post(f"/channels/{channel}/continue"),
        app.delete(f"/channels/{channel}"),
    ]:
        assert reply.status_code == 404
        assert reply.json() == {"message": "Channel not found"}


def test_caller_hangup_order(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call(script=hang_up(when="playback_start"))
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:prompt")
    _, request, finished, _ = app.expect(
        "PlaybackStarted", "ChannelHangupRequest", "PlaybackFinished", "StasisEnd"
    )
    assert request["cause"] == 16 and "soft" not in request
    assert finished["playback"]["state"] == "failed"
    assert call.wait_done(WAIT) == CALLER_HUNG_UP
    assert call.heard[0].outcome == "hangup"
    assert app.post(f"/channels/{channel}/answer").status_code == 404


def test_scripted_press_is_timed_against_the_app(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call(script=press("1", after=0.05))
    (start,) = app.expect("StasisStart")
    channel = start["channel"]["id"]
    app.post(f"/channels/{channel}/play/p1", media="sound:prompt")
    app.expect("PlaybackStarted", "ChannelDtmfReceived")
    app.delete("/playbacks/p1")
    app.expect("PlaybackFinished")
    app.delete(f"/channels/{channel}")
    assert call.wait_done(WAIT) == HUNGUP_BY_APP
    assert call.digits == ["1"]
    pairs = [(x.event, x.command) for x in fake.latencies()]
    assert pairs == [
        ("StasisStart", "play"),
        ("ChannelDtmfReceived", "stop_playback"),
        ("PlaybackFinished", "hangup"),
    ]
    assert call.commands() == [
        f"POST /ari/channels/{channel}/play/p1",
        "DELETE /ari/playbacks/p1",
        f"DELETE /ari/channels/{channel}",
    ]


def test_bad_scripts_are_refused(fake: FakeAsterisk) -> None:
    with pytest.raises(ValueError, match="step 1"):
        fake.place_call(script=[("dance",)])
    with pytest.raises(ValueError, match="step 2"):
        fake.place_call(script=[("sleep", 1), ("dtmf", "12")])


# --- the application and its parked channels -----------------------------------


def test_applications_lists_channels_still_inside(fake: FakeAsterisk, app: AppClient) -> None:
    first = start_call(fake, app)
    second = start_call(fake, app)
    app.post(f"/channels/{first}/continue")
    app.expect("StasisEnd")
    listed = app.get(f"/applications/{APP}").json()
    assert listed["name"] == APP and listed["channel_ids"] == [second]
    app.close()
    fake.wait_until(lambda: not fake.connected, WAIT)
    # channels stay parked without a socket; the app is still known
    assert app.get(f"/applications/{APP}").json()["channel_ids"] == [second]
    app.delete(f"/channels/{second}")
    assert app.get(f"/applications/{APP}").status_code == 404
    assert fake.counters()["events_dropped"] == 2  # ChannelHangupRequest, StasisEnd


def test_drop_connections_keeps_calls(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    app.expect("StasisStart")
    assert fake.drop_connections() == 1
    assert app.next() == CLOSED
    fake.wait_until(lambda: not fake.connected, WAIT)
    call.press("1")  # lost: nobody is listening
    assert fake.counters()["events_dropped"] == 1
    again = AppClient(fake)
    try:
        fake.wait_connected()
        assert again.get(f"/applications/{APP}").json()["channel_ids"] == [call.id]
        assert call.disposition == STILL_IN_APP
    finally:
        again.close()


def test_restart_keeps_parked_channels(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call()
    app.expect("StasisStart")
    port = fake.port
    fake.stop_server()
    assert app.next() == CLOSED
    with pytest.raises(requests.ConnectionError):
        requests.get(fake.url + "/ari/asterisk/info", timeout=WAIT)
    fake.start_server()
    assert fake.port == port
    again = AppClient(fake)
    try:
        fake.wait_connected()
        assert again.get(f"/applications/{APP}").json()["channel_ids"] == [call.id]
        assert again.post(f"/channels/{call.id}/play/p1", media="sound:short").status_code == 201
        again.expect("PlaybackStarted", "PlaybackFinished")
    finally:
        again.close()


# --- faults -------------------------------------------------------------------------


def test_stalled_socket_neither_answers_pings_nor_sends(fake: FakeAsterisk, app: AppClient) -> None:
    fake.stall()
    app.ws.ping()
    fake.place_call()
    assert app.nothing_within(0.3)
    fake.unstall()
    got = {app.next()["type"], app.next()["type"]}
    assert got == {"StasisStart", PONG["type"]}


def test_rest_delay_slows_one_channel(fake: FakeAsterisk, app: AppClient) -> None:
    channel = start_call(fake, app)
    fake.set_rest_delay(0.3, channel_id=channel)
    began = time.monotonic()
    assert app.post(f"/channels/{channel}/answer").status_code == 204
    assert time.monotonic() - began >= 0.3
    fake.set_rest_delay(0.0, channel_id=channel)
    fake.set_rest_delay(0.2)
    began = time.monotonic()
    assert app.get("/asterisk/info").status_code == 200  # not a channel request
    assert app.get(f"/channels/{channel}").status_code == 200
    assert time.monotonic() - began >= 0.2


def test_failed_requests_for_one_channel_then_normal_again(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    other = start_call(fake, app)
    fake.fail_requests(channel, "hangup", status=503, times=2)
    fake.fail_requests(channel, "continue", status=0)
    assert app.delete(f"/channels/{channel}").status_code == 503
    assert app.delete(f"/channels/{other}").status_code == 204  # other channels are fine
    with pytest.raises(requests.ConnectionError):
        app.post(f"/channels/{channel}/continue")  # closed without an answer
    assert app.delete(f"/channels/{channel}").status_code == 503
    assert channel in fake.channels_in_app()  # a failed request changes nothing
    assert app.delete(f"/channels/{channel}").status_code == 204
    [call] = [c for c in fake.calls() if c.id == channel]
    assert call.wait_done(WAIT) == HUNGUP_BY_APP
    assert [r.status for r in call.requests] == [503, 0, 503, 204]


def test_failing_until_cleared(fake: FakeAsterisk, app: AppClient) -> None:
    channel = start_call(fake, app)
    fake.fail_requests(channel, "get", times=None)
    for _ in range(3):
        assert app.get(f"/channels/{channel}").status_code == 500
    fake.fail_requests(channel, "get", times=0)
    assert app.get(f"/channels/{channel}").status_code == 200
    with pytest.raises(ValueError, match="kind must be one of"):
        fake.fail_requests(channel, "dance")


# --- other resources -----------------------------------------------------------------


def test_sounds(app: AppClient) -> None:
    known = app.get("/sounds/custom%2FIVR_DND_OPERATORS")
    assert known.status_code == 200
    assert known.json()["id"] == "custom/IVR_DND_OPERATORS"
    assert {f["language"] for f in known.json()["formats"]} == {"en", "ru"}
    assert app.get("/sounds/custom/IVR_DND_OPERATORS").json() == {"message": "Resource not found"}
    assert app.get("/sounds/nope").json() == {"message": "Sound not found"}


def test_control_endpoint_places_calls(fake: FakeAsterisk, app: AppClient) -> None:
    spec = {"number": "+79000000001", "count": 2, "script": [["dtmf", "5"], ["hangup"]]}
    reply = requests.post(fake.url + "/_fake/calls", json=spec, timeout=WAIT)
    assert reply.status_code == 201
    ids = reply.json()["ids"]
    fake.wait_until(lambda: fake.counters().get("caller_hung_up") == 2, WAIT)
    record = requests.get(f"{fake.url}/_fake/calls/{ids[0]}", timeout=WAIT).json()
    assert record["digits"] == ["5"]
    assert record["events"] == ["StasisStart", "ChannelDtmfReceived", "ChannelHangupRequest",
                                "StasisEnd"]  # fmt: skip
    stats = requests.get(fake.url + "/_fake/stats", timeout=WAIT).json()
    assert stats["counters"]["calls"] == 2
    bad = requests.post(fake.url + "/_fake/calls", json={"script": [["fly"]]}, timeout=WAIT)
    assert bad.status_code == 400


def test_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "stasis_dnd.testing.fake_asterisk", "--port", str(port),
               "--username", USER, "--password", PASSWORD, "--app", APP,
               "--sound", "a=0.1"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert "listening on" in server.stdout.readline()
        info = requests.get(
            f"http://127.0.0.1:{port}/ari/sounds/a", auth=(USER, PASSWORD), timeout=WAIT
        )
        assert info.json()["id"] == "a"
    finally:
        server.terminate()
        assert server.wait(WAIT) == 0
