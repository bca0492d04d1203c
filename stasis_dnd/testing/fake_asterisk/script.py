"""Caller scripts: what a fake caller does, as a list of plain steps.

    [("wait_playback_start",), ("sleep", 0.5), ("dtmf", "1")]   # press 1 into the prompt
    [("wait_playback_end",), ("sleep", 1.0), ("dtmf", "1")]     # press 1 after it
    [("sleep", 2.0), ("hangup",)]                                # give up after 2 s
    []                                                           # stay silent

Steps (lists from JSON work too):
- ("sleep", seconds)
- ("wait_answer",): until the app answers (at once if the call came in Up)
- ("wait_playback_start",) / ("wait_playback_end",): until the next prompt
  starts / ends; each wait takes the next one the caller has not waited for
- ("wait_media", uri): until a media URI starts playing, alone or as a part
  of a play of several ("digits:79001234567"); likewise each wait takes the
  next time it starts
- ("dtmf", digit) or ("dtmf", digit, duration_ms): press a key
- ("hangup",): hang up

A script ends with the call: once the call has left the app, later steps are
not run. Without a hangup step the caller stays on the line until the app acts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Step = tuple[Any, ...]

WAIT_STEPS = {
    "wait_answer": "answer",
    "wait_playback_start": "playback_start",
    "wait_playback_end": "playback_end",
}
_DTMF_KEYS = set("0123456789*#ABCD")


def parse(steps: Iterable[Sequence[Any]]) -> tuple[Step, ...]:
    """Check a script and return it as tuples; ValueError says what is wrong."""
    parsed: list[Step] = []
    for number, raw in enumerate(steps, start=1):
        if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
            raise ValueError(f"script step {number} must be a list like ['sleep', 1.0]")
        step = tuple(raw)
        kind = step[0]
        if kind == "sleep" and len(step) == 2 and _is_number(step[1]) and step[1] >= 0:
            parsed.append(("sleep", float(step[1])))
        elif _is_wait(step):
            parsed.append(step)
        elif kind == "dtmf" and len(step) in (2, 3) and _is_digit(step[1]):
            duration = step[2] if len(step) == 3 else 100
            if not isinstance(duration, int) or duration <= 0:
                raise ValueError(f"script step {number}: dtmf duration must be milliseconds > 0")
            parsed.append(("dtmf", step[1], duration))
        elif kind == "hangup" and len(step) == 1:
            parsed.append(step)
        else:
            raise ValueError(f"script step {number} is not understood: {list(step)!r}")
    return tuple(parsed)


def press(digit: str, after: float = 0.0, when: str = "playback_start") -> list[Step]:
    """Press `digit` `after` seconds after the next prompt starts (or ends, or now)."""
    steps: list[Step] = []
    if when != "now":
        steps.append((f"wait_{when}",))
    if after:
        steps.append(("sleep", after))
    steps.append(("dtmf", digit))
    return steps


def key_in(
    keys: str, *, after_media: str = "", gap: float = 0.25, duration_ms: int = 120
) -> list[Step]:
    """Key in a string ("79001234567#") as a person does: `duration_ms` per
    key, `gap` seconds between keys; after `after_media` starts, if given."""
    steps: list[Step] = [("wait_media", after_media)] if after_media else []
    for number, key in enumerate(keys):
        if number:
            steps.append(("sleep", gap))
        steps.append(("dtmf", key, duration_ms))
    return steps


def hang_up(after: float = 0.0, when: str = "now") -> list[Step]:
    """Hang up `after` seconds after a moment: now, answer, playback_start, playback_end."""
    steps: list[Step] = []
    if when != "now":
        steps.append((f"wait_{when}",))
    if after:
        steps.append(("sleep", after))
    steps.append(("hangup",))
    return steps


def _is_wait(step: Step) -> bool:
    if step[0] == "wait_media":
        return len(step) == 2 and isinstance(step[1], str) and bool(step[1])
    return step[0] in WAIT_STEPS and len(step) == 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_digit(value: object) -> bool:
    return isinstance(value, str) and len(value) == 1 and value in _DTMF_KEYS
