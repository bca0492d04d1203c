"""Benchmark 1: events per second through the call-flow core, one thread.

    .venv/bin/python -m bench.core [--quick] [--calls N]

Each scenario is one caller's whole conversation as the core sees it (the
ARI events and the shell's own events, e.g. `CallbackStored`), fed to a fresh
`CallFlow` per call. The commands the flow answers with are checked once
against what the scenario expects, then the same events are replayed through
many fresh flows and timed. No I/O, no threads: this is the cost of the rules.

Baseline, measured in the same run: what the shell must do anyway for each
ARI event before the core sees it, `json.loads` of the message as Asterisk 22
sends it plus `translate()` to a core event. The core should be a small part
of the per-event cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import machine, table
from stasis_dnd.ari.translate import translate
from stasis_dnd.core import (
    CallbackStored,
    CallFlow,
    CancelTimer,
    Channel,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Ending,
    Event,
    Hangup,
    Play,
    PlaybackFinished,
    PlaybackStarted,
    RequestCallback,
    StartTimer,
    StasisEnd,
    StasisStart,
    StopPlayback,
    TimerFired,
)
from stasis_dnd.settings import IvrSettings
from stasis_dnd.testing.fake_asterisk import ari_json

DESCRIPTION = "Events per second through the call-flow core, one thread."
CHANNEL = Channel("1795759817.42", "Up", "Ivan", "+7 900 123-45-67", "en")
UNANSWERED = Channel("1795759817.43", "Ring", "Ivan", "+7 900 123-45-67", "en")
APP = "stasis-dnd"
HIDDEN = Channel("1795759817.44", "Up", "Anonymous", "anonymous", "en")
# The original's steps: no read-back, no confirmation (the default flow is
# measured by the scenarios that say so).
ORIGINAL = IvrSettings(readback=False, confirmation="")


@dataclass(frozen=True)
class Scenario:
    name: str
    channel: Channel
    # What the caller does, given the commands so far: the next events to feed.
    events: tuple[Event, ...]
    # Command types the flow must answer with over the whole call, in order
    # (empty: checked by `phone` and the ending only).
    expected: tuple[type, ...]
    # The [ivr] settings; the first three scenarios are the original's flow.
    settings: IvrSettings = ORIGINAL
    # The one number the call must file a request for ("" = none).
    phone: str = ""


def _ids(channel: Channel, *kinds: str) -> list[str]:
    # The flow numbers its playbacks and timers in one sequence per call.
    return [f"{channel.id}-{kind}{n}" for n, kind in enumerate(kinds, start=1)]


def scenarios() -> list[Scenario]:
    menu, _store, goodbye = _ids(CHANNEL, "p", "store", "p")
    # Every playback is watched for its start, then (once it started) for its end.
    watched = (Play, StartTimer, CancelTimer, StartTimer)
    press1 = Scenario(
        "press 1 during the prompt",
        CHANNEL,
        (
            StasisStart(CHANNEL, ("TIMEOUT",)),
            PlaybackStarted(menu),
            ChannelDtmfReceived("1"),
            PlaybackFinished(menu, "done"),
            CallbackStored(),
            PlaybackStarted(goodbye),
            PlaybackFinished(goodbye, "done"),
            ChannelHangupRequest(),
            StasisEnd(),
        ),
        (
            *(*watched, StopPlayback, CancelTimer, RequestCallback, StartTimer),
            *(CancelTimer, *watched, CancelTimer, Hangup),
        ),
    )
    menu, digit, sorry, goodbye = _ids(CHANNEL, "p", "digit", "p", "p")
    silent = Scenario(
        "silence: timeout, sorry, goodbye",
        CHANNEL,
        (
            StasisStart(CHANNEL, ("TIMEOUT",)),
            PlaybackStarted(menu),
            PlaybackFinished(menu, "done"),
            TimerFired(digit),
            PlaybackStarted(sorry),
            PlaybackFinished(sorry, "done"),
            PlaybackStarted(goodbye),
            PlaybackFinished(goodbye, "done"),
            ChannelHangupRequest(),
            StasisEnd(),
        ),
        (
            *(*watched, CancelTimer, StartTimer),
            *(*watched, CancelTimer, *watched, CancelTimer, Hangup),
        ),
    )
    pause, menu, _digit, _store, goodbye = _ids(UNANSWERED, "pause", "p", "digit", "store", "p")
    unanswered = Scenario(
        "unanswered, press 1 after the prompt",
        UNANSWERED,
        (
            StasisStart(UNANSWERED, ("TIMEOUT",)),
            TimerFired(pause),
            PlaybackStarted(menu),
            PlaybackFinished(menu, "done"),
            ChannelDtmfReceived("1"),
            CallbackStored(),
            PlaybackStarted(goodbye),
            PlaybackFinished(goodbye, "done"),
            ChannelHangupRequest(),
            StasisEnd(),
        ),
        # Answer, pause timer, menu (and its watchdogs), digit timer, cancel it,
        # request (and its timer), goodbye (and its watchdogs), hang up.
        (
            *(object, StartTimer, *watched, CancelTimer, StartTimer, object),
            *(RequestCallback, StartTimer, CancelTimer, *watched, CancelTimer, Hangup),
        ),
    )
    return [press1, silent, unanswered, _read_back(), _keyed_in()]


def _confirm_and_leave(readback: str, confirmed: str, goodbye: str) -> tuple[Event, ...]:
    """1 during the read-back, the request stored, confirmation, goodbye, gone."""
    return (
        ChannelDtmfReceived("1"),
        PlaybackFinished(readback, "done"),
        CallbackStored(),
        PlaybackStarted(confirmed),
        PlaybackFinished(confirmed, "done"),
        PlaybackStarted(goodbye),
        PlaybackFinished(goodbye, "done"),
        ChannelHangupRequest(),
        StasisEnd(),
    )


def _read_back(parts: int = 13) -> Scenario:
    """The default flow: the key, the number read back (each of its `parts`
    reports starting), 1 to confirm, confirmation, goodbye."""
    menu, readback, _store, confirmed, goodbye = _ids(CHANNEL, "p", "p", "store", "p", "p")
    return Scenario(
        "default: press 1, confirm the read-back",
        CHANNEL,
        (
            StasisStart(CHANNEL, ("TIMEOUT",)),
            PlaybackStarted(menu),
            ChannelDtmfReceived("1"),
            PlaybackFinished(menu, "done"),
            *[PlaybackStarted(readback)] * parts,
            *_confirm_and_leave(readback, confirmed, goodbye),
        ),
        (),
        IvrSettings(),
        "+79001234567",
    )


def _keyed_in() -> Scenario:
    """The default flow for a hidden number: the key, the entry prompt, ten
    digits and #, the read-back, 1 to confirm, confirmation, goodbye."""
    menu, entry = _ids(HIDDEN, "p", "p")
    # Each digit starts the inter-digit timer anew (ids 3 to 12), then the read-back.
    readback, confirmed, goodbye = (f"{HIDDEN.id}-p{n}" for n in (13, 15, 16))
    return Scenario(
        "default: hidden number keys one in",
        HIDDEN,
        (
            StasisStart(HIDDEN, ("TIMEOUT",)),
            PlaybackStarted(menu),
            ChannelDtmfReceived("1"),
            PlaybackFinished(menu, "done"),
            PlaybackStarted(entry),
            PlaybackStarted(entry),
            *[ChannelDtmfReceived(digit) for digit in "4951234567#"],
            PlaybackFinished(entry, "done"),
            *[PlaybackStarted(readback)] * 12,
            *_confirm_and_leave(readback, confirmed, goodbye),
        ),
        (),
        IvrSettings(),
        "4951234567",
    )


def check(scenario: Scenario) -> None:
    """The flow answers the scenario's events with the expected commands."""
    flow = CallFlow(scenario.settings)
    commands = [c for e in scenario.events for c in flow.handle(e)]
    kinds = tuple(type(c) for c in commands)
    wanted = scenario.expected
    matches = not wanted or (
        len(kinds) == len(wanted)
        and all(w is object or k is w for k, w in zip(kinds, wanted, strict=True))
    )
    requests = [c.phone for c in commands if isinstance(c, RequestCallback)]
    matches &= requests == ([scenario.phone] if scenario.phone else requests)
    if not matches or flow.ending is not Ending.HUNG_UP:
        raise SystemExit(
            f"scenario {scenario.name!r}: the flow answered {kinds}, ended {flow.ending}"
        )


def time_core(scenario: Scenario, calls: int) -> float:
    """Seconds for `calls` whole calls through fresh flows."""
    events, settings = scenario.events, scenario.settings
    start = time.perf_counter()
    for _ in range(calls):
        flow = CallFlow(settings)
        handle = flow.handle
        for event in events:
            handle(event)
    return time.perf_counter() - start


def ari_messages(scenario: Scenario) -> list[str]:
    """The scenario's ARI events as Asterisk 22 sends them (our own events left out)."""
    ch = scenario.channel
    channel = ari_json.channel(
        channel_id=ch.id, name="PJSIP/trunk-00000001", state=ch.state,
        caller_name=ch.caller_name, caller_number=ch.caller_number, context="dnd-queue",
        priority=3, app_name="Stasis", app_data=f"{APP},TIMEOUT", created=time.time(),
        language=ch.language,
    )  # fmt: skip
    texts = []
    for event in scenario.events:
        body: dict[str, Any]
        if isinstance(event, StasisStart):
            kind, body = "StasisStart", {"args": list(event.args), "channel": channel}
        elif isinstance(event, ChannelDtmfReceived):
            kind, body = "ChannelDtmfReceived", {"digit": event.digit, "duration_ms": 100,
                                                 "channel": channel}  # fmt: skip
        elif isinstance(event, PlaybackStarted | PlaybackFinished):
            state = "playing" if isinstance(event, PlaybackStarted) else event.state
            kind = type(event).__name__
            body = {"playback": ari_json.playback(event.playback_id, "sound:x", ch.id, "en", state)}
        elif isinstance(event, ChannelHangupRequest | StasisEnd):
            kind, body = type(event).__name__, {"channel": channel}
        else:
            continue  # TimerFired, CallbackStored: the shell's own, no JSON
        texts.append(ari_json.event(kind, APP, body))
    return texts


def time_baseline(messages: Sequence[str], repeat: int) -> float:
    """Seconds for `repeat` rounds of json.loads + translate over `messages`."""
    loads, route = json.loads, translate
    start = time.perf_counter()
    for _ in range(repeat):
        for text in messages:
            route(loads(text))
    return time.perf_counter() - start


def best_of(rounds: int, run: Callable[[], float]) -> float:
    """The fastest of `rounds` runs: the least disturbed by the rest of the machine."""
    gc.collect()
    return min(run() for _ in range(rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=DESCRIPTION)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best counts (default 5)")
    parser.add_argument("--quick", action="store_true", help="2000 calls, 2 rounds")
    args = parser.parse_args(argv)
    calls, rounds = (2000, 2) if args.quick else (args.calls, args.rounds)
    print(f"# Core: events per second through CallFlow, one thread\n\n{machine()}\n")
    rows = []
    total_events = total_core = total_base = 0.0
    for scenario in scenarios():
        check(scenario)
        events = len(scenario.events)
        core = best_of(rounds, lambda s=scenario: time_core(s, calls))  # type: ignore[misc]
        messages = ari_messages(scenario)
        base = best_of(rounds, lambda m=messages: time_baseline(m, calls))  # type: ignore[misc]
        per_event = core / (calls * events)
        per_message = base / (calls * len(messages))
        rows.append(
            [scenario.name, events, f"{1 / per_event:,.0f}", f"{per_event * 1e6:.2f}",
             f"{per_message * 1e6:.2f}", f"{core / calls * 1e6:.1f}"]
        )  # fmt: skip
        total_events += calls * events
        total_core += core
        total_base += base / len(messages) * events
    print(
        table(
            ["scenario", "events/call", "core events/s", "core µs/event",
             "baseline µs/event (json.loads + translate)", "core µs/call"],
            rows,
        )
    )  # fmt: skip
    print(
        f"\nAll scenarios: {total_events / total_core:,.0f} events/s through the core "
        f"(best of {rounds} rounds of {calls} calls each). Per event the core costs "
        f"{total_core / total_base:.2f}x what parsing and translating an ARI event costs."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
