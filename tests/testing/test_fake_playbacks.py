"""The fake Asterisk plays several media as Asterisk 22 did (tests/e2e/test_playback.py,
docs/asterisk-behaviour.md "Playbacks of several media")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fake_ari_client import APP, PASSWORD, SOUNDS, USER, WAIT, AppClient, start_call

from stasis_dnd.testing.fake_asterisk import (
    DEFAULT_SOUNDS,
    DIGIT_SOUNDS,
    PREVIOUS_SOUNDS,
    FakeAsterisk,
    key_in,
)

DIGIT = 0.05  # seconds per digit: fast, but long enough to act on
SLOW_DIGIT = 1.0  # long enough for a stop to arrive while the digits play


def with_digits(seconds: float) -> dict[str, float]:
    """SOUNDS and the core sounds `digits:` says, each `seconds` long."""
    return {**SOUNDS, **dict.fromkeys(DIGIT_SOUNDS, seconds)}


@pytest.fixture
def fake() -> Iterator[FakeAsterisk]:
    with FakeAsterisk(USER, PASSWORD, APP, with_digits(DIGIT)) as server:
        yield server
        server.check()


@pytest.fixture
def app(fake: FakeAsterisk) -> Iterator[AppClient]:
    client = AppClient(fake)
    fake.wait_connected()
    yield client
    client.close()


def parts(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    return [
        (e["type"], e["playback"]["state"], e["playback"]["media_uri"],
         e["playback"].get("next_media_uri"))
        for e in events
    ]  # fmt: skip


def until_finished(app: AppClient) -> list[dict[str, Any]]:
    """The app's next messages up to the next PlaybackFinished."""
    seen = [app.next()]
    while seen[-1]["type"] != "PlaybackFinished":
        seen.append(app.next())
    return seen


def test_several_media_are_one_playback_started_and_continuing_per_part(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    reply = app.post(f"/channels/{channel}/play/p1", media="sound:short,digits:12,sound:short")
    assert reply.status_code == 201
    assert reply.json() == {
        "id": "p1",
        "media_uri": "sound:short",
        "next_media_uri": "digits:12",
        "target_uri": f"channel:{channel}",
        "language": "en",
        "state": "queued",
    }
    events = until_finished(app)
    assert {e["playback"]["id"] for e in events} == {"p1"}
    assert parts(events) == [
        ("PlaybackStarted", "playing", "sound:short", "digits:12"),
        ("PlaybackContinuing", "continuing", "sound:short", "digits:12"),
        ("PlaybackStarted", "playing", "digits:12", "sound:short"),
        ("PlaybackContinuing", "continuing", "digits:12", "sound:short"),
        ("PlaybackStarted", "playing", "sound:short", None),
        ("PlaybackFinished", "done", "sound:short", None),
    ]
    (call,) = fake.calls()
    assert call.media_heard() == ["sound:short,digits:12,sound:short"]
    assert call.parts_heard() == ["sound:short", "digits:12", "sound:short"]
    assert call.heard[0].outcome == "done"


def test_a_missing_part_is_skipped_and_only_a_missing_last_part_fails(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    app.post(f"/channels/{channel}/play/p1", media="sound:nope,sound:short,sound:nope")
    assert parts(until_finished(app)) == [
        ("PlaybackStarted", "playing", "sound:nope", "sound:short"),
        ("PlaybackContinuing", "continuing", "sound:nope", "sound:short"),
        ("PlaybackStarted", "playing", "sound:short", "sound:nope"),
        ("PlaybackContinuing", "continuing", "sound:short", "sound:nope"),
        ("PlaybackStarted", "playing", "sound:nope", None),
        ("PlaybackFinished", "failed", "sound:nope", None),
    ]
    assert fake.calls()[0].heard[0].outcome == "failed"


def test_digits_say_each_key_with_its_sound_and_skip_what_has_none(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    app.post(f"/channels/{channel}/play/p1", media="digits:+7900#")
    assert parts(until_finished(app))[-1] == ("PlaybackFinished", "done", "digits:+7900#", None)
    heard = fake.calls()[0].heard[0]
    assert heard.ended is not None
    assert heard.ended - heard.started >= 5 * DIGIT  # 7, 9, 0, 0, # (no "+")


def test_digits_without_their_sounds_are_skipped() -> None:
    with FakeAsterisk(USER, PASSWORD, APP, {**SOUNDS, "digits/7": 30.0}) as fake:
        client = AppClient(fake)
        fake.wait_connected()
        channel = start_call(fake, client)
        client.post(f"/channels/{channel}/play/p1", media="digits:99,sound:short")
        assert parts(until_finished(client)) == [
            ("PlaybackStarted", "playing", "digits:99", "sound:short"),
            ("PlaybackContinuing", "continuing", "digits:99", "sound:short"),
            ("PlaybackStarted", "playing", "sound:short", None),
            ("PlaybackFinished", "done", "sound:short", None),
        ]
        assert client.get("/sounds/digits%2F9").status_code == 404
        assert client.get("/sounds/digits%2F7").status_code == 200
        client.close()
        fake.check()


def test_installed_sounds_have_every_prompt_and_the_digits() -> None:
    prompts = {f"custom/IVR_DND_{name}" for name in (
        "OPERATORS", "CALLBACK_CONFIRMED", "ALREADY_REQUESTED", "READBACK", "READBACK_MENU",
        "ENTER_NUMBER", "NUMBER_INVALID", "NO_NUMBER",
    )}  # fmt: skip
    digits = {f"digits/{digit}" for digit in range(10)}
    assert prompts | digits <= set(DEFAULT_SOUNDS)  # the default: a full install
    assert not digits & set(PREVIOUS_SOUNDS)


def test_a_stop_during_a_sound_part_ends_the_whole_playback(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    app.post(f"/channels/{channel}/play/p1", media="sound:short,sound:prompt,digits:1,sound:short")
    app.expect("PlaybackStarted", "PlaybackContinuing", "PlaybackStarted")
    assert app.delete("/playbacks/p1").status_code == 204
    (finished,) = app.expect("PlaybackFinished")
    assert parts([finished]) == [("PlaybackFinished", "done", "sound:prompt", "digits:1")]
    assert app.nothing_within(0.3)  # no part after it
    call = fake.calls()[0]
    assert call.parts_heard() == ["sound:short", "sound:prompt"]
    assert call.heard[0].outcome == "stopped"


def test_a_stop_during_a_digits_part_is_accepted_and_stops_nothing() -> None:
    with FakeAsterisk(USER, PASSWORD, APP, with_digits(SLOW_DIGIT)) as fake:
        app = AppClient(fake)
        fake.wait_connected()
        channel = start_call(fake, app)
        app.post(f"/channels/{channel}/play/p1", media="sound:short,digits:12,sound:short")
        app.expect("PlaybackStarted", "PlaybackContinuing", "PlaybackStarted")
        assert app.delete("/playbacks/p1").status_code == 204
        assert parts(until_finished(app)) == [
            ("PlaybackContinuing", "continuing", "digits:12", "sound:short"),
            ("PlaybackStarted", "playing", "sound:short", None),
            ("PlaybackFinished", "done", "sound:short", None),
        ]
        assert fake.calls()[0].heard[0].outcome == "done"
        app.close()
        fake.check()


def test_a_playback_that_has_played_no_sound_part_cannot_be_stopped(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    app.post(f"/channels/{channel}/play/p1", media="digits:12")
    app.expect("PlaybackStarted")
    reply = app.delete("/playbacks/p1")
    assert (reply.status_code, reply.json()) == (500, {"message": "Could not stop playback"})


def test_an_empty_part_is_refused_and_of_repeated_media_the_last_plays(
    fake: FakeAsterisk, app: AppClient
) -> None:
    channel = start_call(fake, app)
    empty = app.post(f"/channels/{channel}/play/p1", media="sound:short,,sound:short")
    assert (empty.status_code, empty.json()) == (
        500,
        {"message": "Failed to queue media for playback"},
    )
    repeated = requests.post(
        f"{app.ari}/channels/{channel}/play/p2",
        params=[("media", "sound:prompt"), ("media", "sound:short")],
        auth=(USER, PASSWORD),
        timeout=WAIT,
    )
    assert repeated.status_code == 201
    assert repeated.json()["media_uri"] == "sound:short"
    assert "next_media_uri" not in repeated.json()


def test_a_hang_up_fails_the_part_playing_and_plays_no_more(
    fake: FakeAsterisk, app: AppClient
) -> None:
    call = fake.place_call()
    (start,) = app.expect("StasisStart")
    app.post(f"/channels/{start['channel']['id']}/play/p1", media="sound:prompt,sound:short")
    app.expect("PlaybackStarted")
    call.hang_up()
    _, finished, _ = app.expect("ChannelHangupRequest", "PlaybackFinished", "StasisEnd")
    assert parts([finished]) == [("PlaybackFinished", "failed", "sound:prompt", "sound:short")]
    assert call.parts_heard() == ["sound:prompt"]


def test_a_caller_keys_in_a_string_once_a_part_starts(fake: FakeAsterisk, app: AppClient) -> None:
    call = fake.place_call(script=key_in("79#", after_media="digits:12", gap=0.01))
    (start,) = app.expect("StasisStart")
    app.post(f"/channels/{start['channel']['id']}/play/p1", media="sound:short,digits:12")
    seen = [app.next() for _ in range(7)]
    assert [e["type"] for e in seen[:3]] == [
        "PlaybackStarted",
        "PlaybackContinuing",
        "PlaybackStarted",
    ]
    keys = [e for e in seen[3:] if e["type"] == "ChannelDtmfReceived"]
    assert [(e["digit"], e["duration_ms"]) for e in keys] == [("7", 120), ("9", 120), ("#", 120)]
    fake.wait_until(lambda: call.digits == ["7", "9", "#"], WAIT, "the keys")


def test_a_wait_for_media_needs_a_media_uri(fake: FakeAsterisk) -> None:
    for bad in (["wait_media"], ["wait_media", ""], ["wait_media", 7]):
        with pytest.raises(ValueError, match="not understood"):
            fake.place_call(script=[bad])
