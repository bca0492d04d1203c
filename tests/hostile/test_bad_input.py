"""Bad input end to end through one running `stasis-dnd run`: caller ids and
`Stasis()` arguments from Hypothesis, and fuzzed ARI messages. The CRM only
ever sees the configured parameters and a clean number; junk is logged once
and skipped; the app keeps serving callers."""

from __future__ import annotations

import collections
import itertools
import json
import re
from collections.abc import Iterator

import pytest
from hostile_kit import (
    APP,
    ARI_PASSWORD,
    ARI_USER,
    CRM_PASSWORD,
    CRM_USER,
    ENTER_NUMBER,
    GOODBYE,
    NO_NUMBER_ENTRY,
    PROMPT,
    SHORT_SOUNDS,
    SORRY,
    App,
    requested,
    write_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stasis_dnd.core.callerid import callback_number, phone_of
from stasis_dnd.testing.crm_contract import request_problems
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import Received
from stasis_dnd.testing.fake_asterisk import CALLER_HUNG_UP, HUNGUP_BY_APP, FakeAsterisk, press

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Caller ids reach the flow cut to this length (stasis_dnd.ari.translate).
CUT = 256
# [ivr] number_pattern's default: the only numbers the CRM may get.
PATTERN = r"\+?[0-9]{6,15}"
# The number not matching, a silent caller is asked this often to key one in.
ENTRY_ATTEMPTS = 3


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FakeAsterisk, CrmEmulator, App]]:
    """One fake Asterisk, one CRM emulator, one app for the whole module."""
    folder = tmp_path_factory.mktemp("bad-input")
    with (
        FakeAsterisk(ARI_USER, ARI_PASSWORD, APP, SHORT_SOUNDS) as fake,
        CrmEmulator(CRM_USER, CRM_PASSWORD) as crm,
    ):
        config = write_config(
            folder,
            fake,
            crm,
            {"ivr": {"callerid_source": "number_then_name"}, "outbox": {"dedupe_window": "0"}},
        )
        # Debug, so that every skipped message shows (repeats are not warnings).
        app = App(config, log_level="debug").start()
        try:
            app.wait_log("event=ari_connected")
            yield fake, crm, app
            fake.check()
            crm.check()
        finally:
            assert app.stop() == 0, app.text()


def assert_clean(received: Received) -> None:
    """Only the configured parameters, in the body, with a clean number."""
    assert request_problems(received, username=CRM_USER, password=CRM_PASSWORD) == []
    assert UUID.fullmatch(received.request_id)


def assert_still_serving(app: App) -> None:
    """No traceback, no handler crash; each kind of junk warned about once."""
    text = app.text()
    for crash in ("Traceback", "event=handler_error", "ari_handler_failed", "ari_callback_failed"):
        assert crash not in text, text[-3000:]
    kinds = collections.Counter(
        re.sub(r" \(.*", "", line.split("reason=", 1)[1])
        for line in app.warnings()
        if "event=bad_message" in line
    )
    assert all(n == 1 for n in kinds.values()), kinds


def drained(crm: CrmEmulator, app: App) -> bool:
    """Every request the app stored has reached the CRM."""
    return len(crm.requests) == app.count("event=callback_stored")


# Caller ids as a SIP From header may carry them: anything at all.
CALLER_IDS = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A\+?[0-9 ()\-.]{0,24}\Z"),
    st.text(alphabet="0123456789+ &%#=\"';\x00\n\t\r", max_size=30),
    st.text(min_size=1, max_size=6).map(lambda s: (s * 1024)[:1024]),  # 1 KB long
    st.sampled_from(
        ["", "anonymous", "+", "+7 (900) 123-45-67", "79001234567&j_password=x", "1%262", "#31#"]
    ),
)


@EXAMPLES
@given(number=CALLER_IDS, name=CALLER_IDS)
def test_caller_ids_never_steer_the_crm_request(
    world: tuple[FakeAsterisk, CrmEmulator, App], number: str, name: str
) -> None:
    fake, crm, app = world
    expected = callback_number(phone_of(number, name, "number_then_name"), PATTERN)
    as_cut = callback_number(phone_of(number[:CUT], name[:CUT], "number_then_name"), PATTERN)
    before = len(crm.requests_for(expected)) if expected else 0
    stored = app.count("event=callback_stored")
    # The menu's key; the read-back is confirmed by silence, entry is left silent.
    call = fake.place_call(number, name=name, script=press("1"))
    assert call.wait_done(20) == HUNGUP_BY_APP
    if expected and expected == as_cut:
        assert call.media_heard() == requested(expected)
        assert crm.wait_for(lambda c: len(c.requests_for(expected)) == before + 1)
    elif not expected and not as_cut:
        # Nothing to call back: asked to key a number in, which the caller never does.
        retries = [ENTER_NUMBER] * (ENTRY_ATTEMPTS - 1)
        assert call.media_heard() == [PROMPT, NO_NUMBER_ENTRY, *retries, SORRY, GOODBYE]
        assert app.count("event=callback_stored") == stored
    assert crm.wait_for(lambda c: drained(c, app))
    for received in crm.requests:
        assert_clean(received)
        phone = received.param(crm.phone_param) or ""
        assert re.fullmatch(PATTERN, phone), phone


STASIS_ARGS = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(["breakout", "BREAKOUT", "Breakout", "1", "2", "TIMEOUT", "", ",", "1,1"]),
    ),
    max_size=10,
)
_numbers = itertools.count(1)


@EXAMPLES
@given(args=STASIS_ARGS)
def test_any_stasis_arguments_get_the_menu_or_a_break_out(
    world: tuple[FakeAsterisk, CrmEmulator, App], args: list[str]
) -> None:
    fake, crm, app = world
    number = f"+7900888{next(_numbers):04d}"
    call = fake.place_call(number, args=args, script=press("1"))
    assert call.wait_done(20) == HUNGUP_BY_APP
    breakout = len(args) >= 2 and args[0].lower() == "breakout" and args[1] == "1"
    # A break-out skips the menu, not the read-back (confirmed by silence).
    assert call.media_heard() == (requested(number)[1:] if breakout else requested(number))
    assert crm.wait_for(lambda c: len(c.requests_for(number)) == 1)
    assert_still_serving(app)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
EVENT_TYPES = [
    "StasisStart",
    "StasisEnd",
    "ChannelDtmfReceived",
    "PlaybackStarted",
    "PlaybackFinished",
    "ChannelHangupRequest",
    "ChannelStateChange",
    "ChannelDestroyed",
    "PlaybackContinuing",
]
# Channels the fake does not know: the app's commands for them get 404.
UNKNOWN_ID = st.text(max_size=12).map(lambda s: "fuzz-" + s)
CHANNEL = st.fixed_dictionaries(
    {"id": UNKNOWN_ID | JSON},
    optional={
        "state": st.sampled_from(["Up", "Ring", "Down"]) | JSON,
        "caller": st.fixed_dictionaries({}, optional={"name": JSON, "number": JSON}) | JSON,
        "language": st.sampled_from(["en", "ru"]) | JSON,
    },
)
PLAYBACK = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=12) | JSON,
        "target_uri": UNKNOWN_ID.map(lambda s: "channel:" + s) | JSON,
        "state": st.sampled_from(["done", "failed"]) | JSON,
    },
)
EVENT = st.fixed_dictionaries(
    # ApplicationReplaced is left out: it rightly hands the calls over and waits for the name.
    {"type": st.sampled_from(EVENT_TYPES) | st.text(max_size=20) | JSON},
    optional={
        "channel": CHANNEL | JSON,
        "playback": PLAYBACK | JSON,
        "digit": st.sampled_from(list("0123456789*#")) | JSON,
        "args": st.lists(st.text(max_size=8), max_size=3) | JSON,
    },
).filter(lambda event: event["type"] != "ApplicationReplaced")
MESSAGE = st.one_of(EVENT.map(json.dumps), JSON.map(json.dumps), st.text(max_size=80))


def assert_a_caller_is_served(fake: FakeAsterisk) -> None:
    """The event stream still runs: a new caller is answered with the menu."""
    call = fake.place_call("+79009990000", script=[])
    fake.wait_until(lambda: PROMPT in call.media_heard(), 10, "the menu for a new caller")
    call.hang_up()
    assert call.wait_done(5) == CALLER_HUNG_UP


@EXAMPLES
@given(messages=st.lists(MESSAGE, min_size=1, max_size=5))
def test_fuzzed_ari_messages_are_skipped(
    world: tuple[FakeAsterisk, CrmEmulator, App], messages: list[str]
) -> None:
    fake, _, app = world
    for message in messages:
        assert fake.send_raw(message) == 1
    assert_a_caller_is_served(fake)
    assert_still_serving(app)


# (message, whether it is skipped as unusable)
NASTY: list[tuple[str, bool]] = [
    ("[" * 100_000, True),  # deeper than the JSON parser's recursion limit
    ('{"a":' * 50_000, True),
    ("x" * 1_000_000, True),  # a megabyte of junk
    ("1" * 100_000, True),  # more digits than Python parses
    ('{"type": "StasisStart", "channel": {"id": "\\ud800"}}', True),  # a lone surrogate
    ('{"type": "StasisStart", "channel": {"id": "fuzz-lang", "language": "\\udfff"}}', False),
    ('{"type": "StasisStart", "args": ["\\ud800"], "channel": {"id": "fuzz-args"}}', False),
    ('{"type": "StasisStart", "channel": {"id": "fuzz-nm", "caller": {"name": "\\ud800"}}}', False),
    ('{"type": "ChannelDtmfReceived", "digit": "1", "channel": {"id": "nobody-here"}}', False),
    (
        '{"type": "PlaybackFinished", "playback": {"id": "p", "target_uri": "channel:nobody"}}',
        False,
    ),
    ('{"type": 7}', True),
    ('{"type": null, "channel": []}', True),
    ("null", True),
]


@pytest.mark.parametrize(("message", "unusable"), NASTY, ids=range(len(NASTY)))
def test_nasty_ari_messages_are_skipped(
    world: tuple[FakeAsterisk, CrmEmulator, App], message: str, unusable: bool
) -> None:
    fake, _, app = world
    skipped = app.count("event=bad_message")
    assert fake.send_raw(message) == 1
    assert_a_caller_is_served(fake)
    assert_still_serving(app)
    assert app.count("event=bad_message") == skipped + unusable
