"""The fake's event filter follows the rules Asterisk documents for
PUT /applications/{app}/eventFilter."""

from __future__ import annotations

from stasis_dnd.testing.fake_asterisk.event_filter import EventFilter


def types(*names: str) -> list[dict[str, str]]:
    return [{"type": n} for n in names]


def test_no_filter_and_an_empty_allowed_list_allow_everything() -> None:
    f = EventFilter()
    assert f.allows("ChannelVarset")
    assert f.set({"allowed": []}) == (200, None)
    assert f.allows("ChannelVarset")


def test_an_allowed_list_allows_only_its_types() -> None:
    f = EventFilter()
    f.set({"allowed": types("StasisStart", "StasisEnd")})
    assert f.allows("StasisStart")
    assert not f.allows("ChannelVarset")
    assert f.json() == {
        "events_allowed": types("StasisStart", "StasisEnd"),
        "events_disallowed": [],
    }


def test_disallowed_wins_and_a_list_not_given_stays() -> None:
    f = EventFilter()
    f.set({"allowed": types("StasisStart", "StasisEnd")})
    f.set({"disallowed": types("StasisEnd")})
    assert f.allowed == ["StasisStart", "StasisEnd"]
    assert not f.allows("StasisEnd")
    assert f.allows("StasisStart")


def test_an_empty_body_empties_both_lists() -> None:
    f = EventFilter()
    f.set({"allowed": types("StasisStart"), "disallowed": types("StasisEnd")})
    assert f.set(None) == (200, None)
    assert (f.allowed, f.disallowed) == ([], [])


def test_a_malformed_filter_is_refused_and_changes_nothing() -> None:
    f = EventFilter()
    f.set({"allowed": types("StasisStart")})
    bodies: list[object] = [
        [],
        {"allowed": "StasisStart"},
        {"allowed": [{"kind": "x"}]},
        {"disallowed": [1]},
    ]
    for body in bodies:
        status, _ = f.set(body)
        assert status == 400
    assert f.allowed == ["StasisStart"]
    assert f.disallowed == []
