"""ARI JSON -> core events: what the flow needs, and nothing unusable."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stasis_dnd.ari.translate import BadEvent, stasis_args_of, translate
from stasis_dnd.core import (
    Channel,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
)

CHANNEL = {
    "id": "1700000000.5",
    "name": "Local/press1@test-caller-00000001;1",
    "state": "Up",
    "caller": {"name": "Ivan", "number": "79001234567"},
    "language": "ru",
}


def test_stasis_start() -> None:
    message = {"type": "StasisStart", "args": ["TIMEOUT"], "channel": CHANNEL}
    assert translate(message) == (
        "1700000000.5",
        StasisStart(Channel("1700000000.5", "Up", "Ivan", "79001234567", "ru"), ("TIMEOUT",)),
    )


def test_channel_events() -> None:
    assert translate({"type": "ChannelDtmfReceived", "digit": "1", "channel": CHANNEL}) == (
        "1700000000.5",
        ChannelDtmfReceived("1"),
    )
    assert translate({"type": "ChannelHangupRequest", "channel": CHANNEL})[1] == (  # type: ignore[index]
        ChannelHangupRequest()
    )
    assert translate({"type": "StasisEnd", "channel": CHANNEL})[1] == StasisEnd()  # type: ignore[index]


def test_playbacks_are_routed_by_target() -> None:
    playback = {"id": "p1", "target_uri": "channel:1700000000.5", "state": "failed"}
    assert translate({"type": "PlaybackStarted", "playback": playback}) == (
        "1700000000.5",
        PlaybackStarted("p1"),
    )
    assert translate({"type": "PlaybackFinished", "playback": playback}) == (
        "1700000000.5",
        PlaybackFinished("p1", "failed"),
    )
    bridge = dict(playback, target_uri="bridge:b1")
    assert translate({"type": "PlaybackFinished", "playback": bridge}) is None


def test_known_but_useless_events_are_skipped() -> None:
    assert translate({"type": "ChannelStateChange", "channel": CHANNEL}) is None
    assert translate({"type": "PlaybackContinuing", "playback": {}}) is None


@pytest.mark.parametrize(
    "message",
    [
        {"type": "Nonsense"},
        {},
        {"type": "StasisStart", "channel": CHANNEL, "args": "TIMEOUT"},
        {"type": "StasisStart", "channel": "x"},
        {"type": "StasisStart", "channel": {"id": 5}},
        {"type": "StasisStart", "channel": dict(CHANNEL, caller="x")},
        {"type": "StasisStart", "channel": dict(CHANNEL, state=3)},
        {"type": "ChannelDtmfReceived", "digit": "12", "channel": CHANNEL},
        {"type": "ChannelDtmfReceived", "digit": "1"},
        {"type": "PlaybackStarted", "playback": None},
        {"type": "PlaybackFinished", "playback": {"target_uri": "channel:x"}},
        {"type": "StasisEnd", "channel": {"id": "x" * 500}},
    ],
)
def test_unusable_messages_raise_bad_event(message: dict[str, Any]) -> None:
    with pytest.raises(BadEvent):
        translate(message)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


# The first draw on a fresh clone also fills Hypothesis's caches in .hypothesis/
# (1.5 s here), which its speed check took for slow generation.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            "StasisStart",
            "ChannelDtmfReceived",
            "PlaybackStarted",
            "PlaybackFinished",
            "StasisEnd",
            "X",
        ]
    ),
    st.dictionaries(
        st.sampled_from(["channel", "args", "digit", "playback", "caller", "id"]), JSONISH
    ),
)
def test_fuzzed_messages_translate_or_raise_bad_event(kind: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(BadEvent):
        translate({"type": kind, **body})


@pytest.mark.parametrize(
    ("dialplan", "args"),
    [
        ({"app_name": "Stasis", "app_data": "dnd,TIMEOUT,queue=998"}, ("TIMEOUT", "queue=998")),
        ({"app_name": "Stasis", "app_data": "dnd"}, ()),
        ({"app_name": "Stasis", "app_data": ",".join(["dnd", *"abcdefghij"])}, tuple("abcdefgh")),
        ({"app_name": "Queue", "app_data": "999,,,,120"}, ()),  # not in Stasis() (yet)
        ({"app_name": "Stasis", "app_data": 7}, ()),
        ({"app_name": "Stasis"}, ()),
        (None, ()),
        ("Stasis", ()),
    ],
)
def test_a_channels_stasis_arguments_are_read_from_its_dialplan(
    dialplan: object, args: tuple[str, ...]
) -> None:
    assert stasis_args_of({"id": "c1", "dialplan": dialplan}) == args
