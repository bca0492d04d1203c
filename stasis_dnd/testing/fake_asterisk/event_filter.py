"""The app's event type filter (`PUT /applications/{app}/eventFilter`), as
Asterisk 22 documents it:

- a body of `{"allowed": [{"type": T}, ...]}` and/or `{"disallowed": [...]}`;
  a list given replaces that list, a list not given stays as it was; an
  empty body empties both;
- an empty allowed list allows every type; a type in both lists is not sent;
- the filter belongs to the app: once Asterisk forgets the app (no socket, no
  channel), it is gone, and an app that connects again must set it again.
"""

from __future__ import annotations

from typing import Any

from stasis_dnd.testing.fake_asterisk import ari_json

Reply = tuple[int, Any]


class EventFilter:
    def __init__(self) -> None:
        self.allowed: list[str] = []
        self.disallowed: list[str] = []

    def allows(self, kind: str) -> bool:
        if kind in self.disallowed:
            return False
        return not self.allowed or kind in self.allowed

    def clear(self) -> None:
        self.allowed, self.disallowed = [], []

    def set(self, body: object) -> Reply:
        """Apply a request's JSON body (None: no body); the HTTP answer."""
        if body is None:
            self.clear()
            return 200, None
        if not isinstance(body, dict):
            return 400, ari_json.error("Invalid filter")
        lists: dict[str, list[str]] = {}
        for key in ("allowed", "disallowed"):
            if key not in body:
                continue
            entries = body[key]
            if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("type"), str) for e in entries
            ):
                return 400, ari_json.error(f"Invalid {key} filter")
            lists[key] = [e["type"] for e in entries]
        self.allowed = lists.get("allowed", self.allowed)
        self.disallowed = lists.get("disallowed", self.disallowed)
        return 200, None

    def json(self) -> dict[str, list[dict[str, str]]]:
        """The Application object's two fields."""
        return {
            "events_allowed": [{"type": t} for t in self.allowed],
            "events_disallowed": [{"type": t} for t in self.disallowed],
        }
