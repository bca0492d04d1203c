"""Hostile input through a real Asterisk 22 (issue 7, bad input).

The fake-Asterisk versions (tests/hostile/test_bad_input.py) feed the app
what a test writes; here Asterisk itself turns the input into what the app
gets, so these tests also record what Asterisk does with it.

``Stasis()`` arguments: the dialplan target ``e2e-targets,stasis-args``
enters ``Stasis(${DND_APP},${E2E_ARGS})``. Seen on Asterisk 22.10: the
variable is substituted once (``${...}`` and ``$[...]`` inside it stay
literal), then split at commas; double quotes group and are removed,
backslash escapes the next character, parentheses group (``a(b,c)d`` is
one argument); spaces and tabs are kept; an empty value is one empty
argument; past 128 arguments the last one holds the rest, commas and all.

Caller ids over SIP: the phone leg's ``callerId`` ``"name" <number>``
becomes its From header; the caller is the inbound channel Asterisk makes
of it. Seen on Asterisk 22.10 (ARI originate -> PJSIP -> PJSIP):

- names and numbers are cut to 255 characters by ARI originate, then to
  79 by the inbound PJSIP channel;
- a name's ``"`` arrives as ``\\"``, a lone backslash disappears, control
  characters (tab, CR, 0x01, 0x7f) arrive with a backslash before them;
  unicode, ``&%#=<>`` arrive unchanged;
- the number is the From URI's user part, percent-decoded: ``%2B7900...``
  arrives as ``+7900...``, ``1%262`` as ``1&2``, ``%0A`` as a newline, and
  ``%00`` cuts the number there; ``;param=1`` after it is a URI parameter
  and is dropped; ``+7(900)555.04.07`` is shrunk to ``+79005550407`` by ARI
  originate, while spaces and dashes are kept; an empty number arrives as
  ``asterisk`` (the From user of the endpoint).

What cannot be sent this way: a name with a line feed (Asterisk writes it
raw into the From header; the receiving PJSIP drops the INVITE as a syntax
error, so the call never arrives) and a NUL (ARI cuts the caller id string
there, garbling it).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from app_kit import CALL_TIMEOUT, CRM_PASSWORD, CRM_USER, GOODBYE, PROMPT, Observer, RunningApp
from e2e_kit import Ari

from stasis_dnd.testing.crm_contract import request_problems
from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.crm_replies import Received

pytestmark = pytest.mark.e2e

NO_NUMBER = "sound:custom/IVR_DND_NO_NUMBER"
# Menu, the offer to key a number in, three silent tries of 5 s, sorry, goodbye.
ENTRY_CALL_TIMEOUT = 90.0


BREAKOUT = "breakout"  # straight to the callback request, no menu
MENU = "menu"
# E2E_ARGS as the dialplan holds it; the comment says what the app got.
STASIS_ARGS = [
    ("breakout,1", BREAKOUT),  # ["breakout", "1"]
    ("BREAKOUT,1,and,more", BREAKOUT),  # the word in any case; extra args ignored
    ("breakout,11", MENU),
    ("breakout,#", MENU),
    ("breakout,", MENU),  # ["breakout", ""]
    (" breakout , 1 ", MENU),  # [" breakout ", " 1 "]: not stripped
    ("breakout\t,1", MENU),
    ('"breakout,1"', MENU),  # ["breakout,1"]
    ("breakout\\,1", MENU),  # ["breakout,1"]
    ("", MENU),  # [""]
    (",,,,", MENU),  # five empty arguments
    ('a"b"c,\\",\\\\,a(b,c)d', MENU),  # ["abc", '"', "\\", "a(b,c)d"]
    ("ünïcødé,Привет,😀", MENU),
    ("x" * 1024, MENU),  # one 1 KB argument
    (",".join(str(n) for n in range(200)), MENU),  # 128 arguments
    ("${DND_APP},$[1+1],TIMEOUT,FULL,no such word", MENU),  # literal, not substituted
]

# +79005550418 in fullwidth digits: digits to Unicode, not to the app.
FULLWIDTH_NUMBER = "".join(chr(0xFF10 + int(d)) for d in "79005550418")
# (name, number) as the phone sends them; the number the CRM must get, or
# None: no request at all (offered to key a number in, the caller keys none).
CALLER_IDS: list[tuple[str, str, str | None]] = [
    ("Иван Петров 😀", "+79005550401", "+79005550401"),
    ("a&b%c#d=e <evil> j_password=x", "+79005550402", "+79005550402"),
    ("n" * 1024, "+79005550403", "+79005550403"),
    ("ctl\x01\x7f\ttab\rcr", "+79005550404", "+79005550404"),
    ('say "hi" back\\slash', "+79005550405", "+79005550405"),
    ("Ivan", "+7 900 555-04-06", "+79005550406"),
    ("Ivan", "+7(900)555.04.07", "+79005550407"),
    ("Ivan", "%2B79005550408", "+79005550408"),
    ("Ivan", "79005550409;param=1", "79005550409"),
    ("Ivan", "7900555%000410", "7900555"),  # %00 ends the number
    ("Ivan", "79005550411&j_password=x", None),
    ("Ivan", "1%262", None),  # arrives as 1&2
    ("Ivan", "7900%0A5550413", None),  # arrives with a newline
    ("Ivan", "abc79005550414", None),
    ("Ivan", "+7900=5550415", None),
    ("Ivan", "#31#79005550416", None),
    ("79005550417", "", None),  # arrives as "asterisk"; the name is not used
    ("Ivan", FULLWIDTH_NUMBER, None),
    ("Ivan", "7" * 1024, None),  # 79 digits arrive
    ("Ivan", "79005550420@evil.example", None),
]


def assert_clean(received: Received) -> None:
    """Only the configured parameters, in the body, with a clean number."""
    assert request_problems(received, username=CRM_USER, password=CRM_PASSWORD) == []


def assert_still_serving(
    asterisk: Ari,
    app: RunningApp,
    crm: CrmEmulator,
    cleanup: Callable[[str], str],
    *,
    before: int,
    number: str,
) -> None:
    """Nothing crashed, and a normal caller through the queue is served.

    ``number`` differs per test: the outbox files a repeat within its dedupe
    window only once.
    """
    text = app.log_text()[before:]
    for crash in ("Traceback", "level=ERROR", "event=handler_error", "ari_handler_failed"):
        assert crash not in text, text
    caller = cleanup(
        asterisk.originate_caller(
            "press1after4",
            number=number,
            variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
        )
    )
    assert crm.wait_for(lambda c: number in c.delivered_phones(), timeout=CALL_TIMEOUT)
    assert asterisk.wait_gone(caller, CALL_TIMEOUT)


def test_hostile_stasis_arguments_are_all_served(
    asterisk: Ari,
    app: RunningApp,
    emulator: CrmEmulator,
    observer: Observer,
    cleanup_channels: Callable[[str], str],
) -> None:
    """Every caller gets the menu or, for a break-out with the accept key, is
    filed at once; each presses 1 and is filed exactly once; none stays parked."""
    emulator.clear()
    before = len(app.log_text())
    calls: dict[str, tuple[str, str, str]] = {}
    # All at once: each call takes about 10 s, in parallel.
    for i, (args, expected) in enumerate(STASIS_ARGS):
        number = f"+7900555{1000 + i}"
        caller = asterisk.originate_caller(
            "press1after3",
            number=number,
            variables={"DND_APP": app.name, "E2E_ARGS": args},
            context="e2e-targets",
            extension="stasis-args",
        )
        calls[cleanup_channels(caller)] = (args, expected, number)

    numbers = sorted(number for _, _, number in calls.values())
    assert emulator.wait_for(
        lambda c: sorted(c.delivered_phones()) == numbers, timeout=CALL_TIMEOUT
    ), emulator.delivered_phones()
    for caller, (args, expected, _) in calls.items():
        assert asterisk.wait_gone(caller, CALL_TIMEOUT), args
        app.wait_log(f"event=call channel={caller} ", after=before)
        assert "outcome=callback ending=hung_up" in app.call_line(caller), args
        heard = observer.heard(caller)
        assert (PROMPT in heard) == (expected == MENU), (args, heard)
        assert heard[-1] == GOODBYE, (args, heard)
    assert sorted(emulator.delivered_phones()) == numbers  # still once each
    for received in emulator.requests:
        assert_clean(received)
    assert asterisk.app_channels(app.name) == []
    assert_still_serving(
        asterisk, app, emulator, cleanup_channels, before=before, number="+79005559901"
    )


def test_hostile_caller_ids_over_sip_never_steer_the_crm_request(
    asterisk: Ari,
    app: RunningApp,
    emulator: CrmEmulator,
    observer: Observer,
    cleanup_channels: Callable[[str], str],
) -> None:
    """Each caller presses 1: the CRM gets the clean number once, or nothing."""
    emulator.clear()
    before = len(app.log_text())
    calls: dict[str, tuple[str, str, str | None, str | None]] = {}
    for name, number, expected in CALLER_IDS:
        sip = asterisk.originate_sip_caller(
            "press1after4",
            number=number,
            name=name,
            variables={"DND_APP": app.name, "DND_QUEUE_TIMEOUT": "1"},
        )
        cleanup_channels(sip.phone)
        # What Asterisk made of it, for the failure messages.
        delivered = asterisk.variable(sip.caller, "CALLERID(num)")
        calls[cleanup_channels(sip.caller)] = (name, number, expected, delivered)

    for caller, (name, number, expected, delivered) in calls.items():
        case = (name[:40], number[:40], delivered)
        # A caller without a usable number is asked three times to key one in.
        assert asterisk.wait_gone(caller, ENTRY_CALL_TIMEOUT), case
        app.wait_log(f"event=call channel={caller} ", after=before)
        line = app.call_line(caller)
        heard = observer.heard(caller)
        if expected:
            assert "outcome=callback ending=hung_up" in line, (case, line)
            assert heard[0] == PROMPT, (case, heard)
        else:
            # No usable number: after the 1 the caller is asked to key one in;
            # this phone keys nothing, so no request.
            assert "outcome=invalid_number ending=hung_up" in line, (case, line)
            assert heard[0] == PROMPT and NO_NUMBER in heard, (case, heard)
        assert heard[-1] == GOODBYE, (case, heard)

    wanted = sorted(expected for _, _, expected, _ in calls.values() if expected)
    assert emulator.wait_for(lambda c: sorted(c.delivered_phones()) == wanted), (
        emulator.delivered_phones()
    )
    assert len(emulator.requests) == len(wanted)
    for received in emulator.requests:
        assert_clean(received)
    assert asterisk.app_channels(app.name) == []
    assert_still_serving(
        asterisk, app, emulator, cleanup_channels, before=before, number="+79005559902"
    )
