"""What Asterisk 22 does with a play of several media, as our ARI client sends it.

The read-back ("we will call you back at" + the number + the menu) is one
play whose media are joined by commas. These tests pin, on the real Asterisk,
the events such a playback sends, how `digits:` plays in English and Russian,
what a missing part does, and what DELETE /playbacks does to it
(docs/asterisk-behaviour.md, "Playbacks of several media").
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_kit import Ari, AriEvents

from stasis_dnd.ari.rest import AriRest
from stasis_dnd.settings import AriSettings

pytestmark = pytest.mark.e2e

NUMBER = "79001234567"
GOODBYE = "sound:vm-goodbye"
MISSING = "sound:custom/E2E_NO_SUCH_SOUND"


@pytest.fixture
def rest(asterisk: Ari) -> Iterator[AriRest]:
    """The app's own ARI client, so the media travel as the app sends them."""
    settings = AriSettings(
        url=asterisk.base.removesuffix("/ari"), username=asterisk.user, password=asterisk.password
    )
    with AriRest(settings) as client:
        yield client


@pytest.fixture
def channel(asterisk: Ari, app_events: AriEvents, cleanup_channels: Callable[[str], str]) -> str:
    """A silent caller in the test's app."""
    channel_id = cleanup_channels(asterisk.originate_into_app(app_events.app))
    app_events.wait_for("StasisStart", channel_id)
    return channel_id


def new_playback_id() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}"


class SoundLog:
    """The sound files Asterisk says it played on a channel (its verbose log)."""

    def __init__(self, root: Path, asterisk: Ari, channel_id: str) -> None:
        self.path = root / "var/log/asterisk/messages.log"
        self.start = self.path.stat().st_size
        name = asterisk.request("GET", f"channels/{channel_id}").json()["name"]
        self.pattern = re.compile(
            re.escape(f"<{name}> Playing '") + r"([^']+)' \(language '([^']+)'\)"
        )

    def played(self) -> list[tuple[str, str]]:
        with self.path.open(errors="replace") as log:
            log.seek(self.start)
            return self.pattern.findall(log.read())

    def wait_played(self, count: int, timeout: float = 10.0) -> list[tuple[str, str]]:
        """The first ``count`` files played (the logger writes a little later)."""
        deadline = time.monotonic() + timeout
        while len(self.played()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.played()


def digit_files(number: str, language: str) -> list[tuple[str, str]]:
    return [(f"digits/{d}.gsm", language) for d in number]


def test_several_media_play_as_one_playback_with_started_and_continuing_per_part(
    asterisk: Ari, app_events: AriEvents, rest: AriRest, channel: str, sandbox_root: Path
) -> None:
    log = SoundLog(sandbox_root, asterisk, channel)
    playback = new_playback_id()
    # AriRest sends the commas as %2C; Asterisk splits after decoding.
    rest.play(channel, playback, f"{GOODBYE},digits:{NUMBER},{GOODBYE}", "en")
    assert app_events.playback_until_finished(playback) == [
        ("PlaybackStarted", "playing", GOODBYE, f"digits:{NUMBER}"),
        ("PlaybackContinuing", "continuing", GOODBYE, f"digits:{NUMBER}"),
        ("PlaybackStarted", "playing", f"digits:{NUMBER}", GOODBYE),
        ("PlaybackContinuing", "continuing", f"digits:{NUMBER}", GOODBYE),
        ("PlaybackStarted", "playing", GOODBYE, None),
        ("PlaybackFinished", "done", GOODBYE, None),
    ]
    wanted = [("vm-goodbye.gsm", "en"), *digit_files(NUMBER, "en"), ("vm-goodbye.gsm", "en")]
    assert log.wait_played(len(wanted)) == wanted


def test_digits_play_in_russian_and_a_plus_is_skipped(
    asterisk: Ari, app_events: AriEvents, rest: AriRest, channel: str, sandbox_root: Path
) -> None:
    for digit in "0123456789":
        sound = asterisk.request("GET", f"sounds/digits%2F{digit}").json()
        assert {"en", "ru"} <= {f["language"] for f in sound["formats"]}, sound
    log = SoundLog(sandbox_root, asterisk, channel)
    playback = new_playback_id()
    rest.play(channel, playback, f"digits:+{NUMBER}", "ru")
    assert app_events.playback_until_finished(playback) == [
        ("PlaybackStarted", "playing", f"digits:+{NUMBER}", None),
        ("PlaybackFinished", "done", f"digits:+{NUMBER}", None),
    ]
    # Russian files, one per digit; nothing for the "+".
    assert log.wait_played(len(NUMBER)) == digit_files(NUMBER, "ru")


def test_a_missing_part_is_skipped_and_only_a_missing_last_part_fails(
    app_events: AriEvents, rest: AriRest, channel: str
) -> None:
    playback = new_playback_id()
    rest.play(channel, playback, f"{MISSING},{GOODBYE},{MISSING}", "en")
    assert app_events.playback_until_finished(playback) == [
        ("PlaybackStarted", "playing", MISSING, GOODBYE),
        ("PlaybackContinuing", "continuing", MISSING, GOODBYE),
        ("PlaybackStarted", "playing", GOODBYE, MISSING),
        ("PlaybackContinuing", "continuing", GOODBYE, MISSING),
        ("PlaybackStarted", "playing", MISSING, None),
        ("PlaybackFinished", "failed", MISSING, None),
    ]


def test_a_stop_during_a_sound_part_ends_the_whole_playback(
    asterisk: Ari, app_events: AriEvents, rest: AriRest, channel: str
) -> None:
    # Digits as sound: media, one per digit: these can be stopped (digits: cannot).
    playback = new_playback_id()
    rest.play(channel, playback, f"{GOODBYE},sound:digits/7,sound:digits/9,{GOODBYE}", "ru")
    app_events.next(
        lambda e: (
            e.get("type") == "PlaybackStarted" and e["playback"]["media_uri"] == "sound:digits/7"
        ),
        "PlaybackStarted of sound:digits/7",
    )
    assert asterisk.request("DELETE", f"playbacks/{playback}").status_code == 204
    finished = app_events.next_playback_event(channel)
    assert finished["type"] == "PlaybackFinished"
    assert finished["playback"]["id"] == playback
    assert finished["playback"]["state"] == "done"
    assert finished["playback"]["media_uri"] == "sound:digits/7"
    # Nothing of the rest follows: the next playback is the next one played.
    after = new_playback_id()
    rest.play(channel, after, GOODBYE, "ru")
    started = app_events.next_playback_event(channel)
    assert (started["type"], started["playback"]["id"]) == ("PlaybackStarted", after)


def test_a_stop_during_a_digits_part_is_accepted_but_stops_nothing(
    asterisk: Ari, app_events: AriEvents, rest: AriRest, cleanup_channels: Callable[[str], str]
) -> None:
    key = f"E2E_KEY_{uuid.uuid4().hex[:8]}"
    channel = cleanup_channels(asterisk.originate_into_app(app_events.app, script=f"press1if{key}"))
    app_events.wait_for("StasisStart", channel)
    playback = new_playback_id()
    rest.play(channel, playback, f"{GOODBYE},digits:12345,{GOODBYE}", "en")
    seen = app_events.next(
        lambda e: (
            e.get("type") == "PlaybackStarted" and e["playback"]["media_uri"] == "digits:12345"
        ),
        "PlaybackStarted of digits:12345",
    )
    assert seen["playback"]["id"] == playback
    asterisk.set_global(key, "now")  # the caller presses 1 while the digits play
    dtmf = app_events.next(
        lambda e: e.get("type") in ("ChannelDtmfReceived", "PlaybackContinuing"),
        "the key or the end of the digits",
    )
    assert (dtmf["type"], dtmf.get("digit")) == ("ChannelDtmfReceived", "1")
    # As the app does on a key: stop the playback. Asterisk says yes...
    assert asterisk.request("DELETE", f"playbacks/{playback}").status_code == 204
    # ...and plays the digits and the part after them to the end all the same.
    assert app_events.playback_until_finished(playback) == [
        ("PlaybackContinuing", "continuing", "digits:12345", GOODBYE),
        ("PlaybackStarted", "playing", GOODBYE, None),
        ("PlaybackFinished", "done", GOODBYE, None),
    ]


def test_a_playback_that_has_played_no_sound_part_cannot_be_stopped(
    asterisk: Ari, app_events: AriEvents, rest: AriRest, channel: str
) -> None:
    playback = new_playback_id()
    rest.play(channel, playback, "digits:12345", "en")
    app_events.next(
        lambda e: e.get("type") == "PlaybackStarted" and e["playback"]["id"] == playback,
        "PlaybackStarted",
    )
    stop = asterisk.request("DELETE", f"playbacks/{playback}")
    assert (stop.status_code, stop.json()) == (500, {"message": "Could not stop playback"})
