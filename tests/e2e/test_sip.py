"""A call over real SIP and RTP (issue 5): Asterisk calls itself on loopback.

The caller is the inbound PJSIP channel, as a phone's call would be: caller id
from the SIP From header, G.711 u-law, and the phone's "1" travelling as an
RFC 4733 event (the endpoint has dtmf_mode=rfc4733 and no in-band detection,
so a digit that arrives came that way). See ``Ari.originate_sip_caller``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from e2e_kit import (
    KEYPAD,
    Ari,
    AriEvents,
    FakeCrm,
    SipCall,
    assert_one_fallback_request,
)

pytestmark = pytest.mark.e2e

SIP_PORT = os.environ.get("STASIS_DND_SANDBOX_SIP_PORT", "15060")
NO_APP = "stasis-dnd-e2e-nobody"  # nobody connects: Stasis() fails over to the dialplan
# Queue + prompt + confirmation + goodbye, with room to spare.
CALL_SECONDS = 25


def register(call: SipCall, cleanup: Callable[[str], str]) -> SipCall:
    cleanup(call.caller)
    cleanup(call.phone)
    return call


def assert_real_sip(asterisk: Ari, call: SipCall) -> None:
    assert asterisk.variable(call.caller, "CHANNEL(pjsip,remote_addr)") == f"127.0.0.1:{SIP_PORT}"
    assert asterisk.variable(call.caller, "CHANNEL(audionativeformat)") == "(ulaw)"


def test_sip_caller_press_1_in_fallback_menu_files_one_request(
    asterisk: Ari, crm: FakeCrm, cleanup_channels: Callable[[str], str]
) -> None:
    call = register(
        asterisk.originate_sip_caller(
            "press1after3",
            number="+79001234567",
            name="Ivan Petrov",
            variables={"DND_APP": NO_APP, "DND_QUEUE_TIMEOUT": "1"},
        ),
        cleanup_channels,
    )
    assert_real_sip(asterisk, call)
    crm.wait_for(1, timeout=15)
    # The fallback plays the confirmation and goodbye, then hangs up: the BYE
    # ends the phone leg too.
    assert asterisk.wait_gone(call.caller, timeout=CALL_SECONDS)
    assert asterisk.wait_gone(call.phone, timeout=5)
    assert_one_fallback_request(crm, "+79001234567")


def test_sip_caller_enters_stasis_answered_and_its_digit_arrives(
    asterisk: Ari,
    app_events: AriEvents,
    crm: FakeCrm,
    cleanup_channels: Callable[[str], str],
) -> None:
    call = register(
        asterisk.originate_sip_caller(
            "press1after2",
            number="+79001234567",
            name="Ivan Petrov",
            variables={"DND_APP": app_events.app, "DND_QUEUE_TIMEOUT": "1"},
        ),
        cleanup_channels,
    )
    start = app_events.wait_for("StasisStart", call.caller)
    assert start["args"][0] == "TIMEOUT"
    channel = start["channel"]
    assert channel["name"].startswith("PJSIP/self-")
    # dnd-queue answers before Queue(), so the channel arrives Up.
    assert channel["state"] == "Up"
    # Parsed from the From header: "Ivan Petrov" <sip:+79001234567@127.0.0.1>.
    assert channel["caller"] == {"name": "Ivan Petrov", "number": "+79001234567"}
    assert channel["protocol_id"]  # the SIP Call-ID

    dtmf = app_events.wait_for("ChannelDtmfReceived", call.caller)
    assert dtmf["digit"] == "1"
    assert asterisk.request("DELETE", f"channels/{call.caller}").status_code == 204
    app_events.wait_for("StasisEnd", call.caller)
    assert asterisk.wait_gone(call.phone, timeout=5)
    assert crm.received() == []


def test_unanswered_sip_caller_enters_stasis_ringing(
    asterisk: Ari, app_events: AriEvents, cleanup_channels: Callable[[str], str]
) -> None:
    # A dialplan that sends a SIP call to Stasis() before answering it.
    call = register(
        asterisk.originate_sip_caller(
            "silent",
            variables={"DND_APP": app_events.app},
            context="e2e-targets",
            extension="stasis-unanswered",
        ),
        cleanup_channels,
    )
    start = app_events.wait_for("StasisStart", call.caller)
    assert start["channel"]["state"] == "Ring"
    assert start["channel"]["caller"] == {"name": "Ivan", "number": "+79001234567"}
    # Answering over ARI is what makes it Up (and lets the phone's script run).
    assert asterisk.request("POST", f"channels/{call.caller}/answer").status_code == 204
    assert asterisk.variable(call.caller, "CHANNEL(state)") == "Up"


def test_sip_caller_with_a_hidden_number_arrives_as_anonymous_and_keys_in_a_number(
    asterisk: Ari, app_events: AriEvents, cleanup_channels: Callable[[str], str]
) -> None:
    call = register(
        asterisk.originate_sip_caller(
            KEYPAD,
            hidden=True,
            variables={"DND_APP": app_events.app},
            context="e2e-targets",
            extension="stasis-unanswered",
        ),
        cleanup_channels,
    )
    start = app_events.wait_for("StasisStart", call.caller)
    # Parsed from From: "Anonymous" <sip:anonymous@anonymous.invalid>.
    assert start["channel"]["caller"] == {"name": "Anonymous", "number": "anonymous"}
    from_header = asterisk.variable(call.caller, "PJSIP_HEADER(read,From)") or ""
    assert from_header.startswith('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=')
    assert asterisk.variable(call.caller, "PJSIP_HEADER(read,Privacy)") == "id"
    # The endpoint does not trust the peer's identity headers (trust_id_inbound
    # is off), so Privacy: id does not make the presentation restricted.
    assert asterisk.variable(call.caller, "CALLERID(pres)") == "allowed_not_screened"

    assert asterisk.request("POST", f"channels/{call.caller}/answer").status_code == 204
    asterisk.send_keys(call, "79001234567#")
    keyed = [app_events.wait_for("ChannelDtmfReceived", call.caller) for _ in range(12)]
    assert "".join(e["digit"] for e in keyed) == "79001234567#"
    assert {e["duration_ms"] for e in keyed} == {120}
    # The same phone keys in again when given more.
    asterisk.send_keys(call, "1")
    assert app_events.wait_for("ChannelDtmfReceived", call.caller)["digit"] == "1"
