"""sandbox/demo (the live demo on the sandbox Asterisk): its verdict and transcripts.

The demo itself needs root and the sandbox; these tests check, without either,
the parts that decide what it prints and its exit status.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from stasis_dnd.core import Outcome
from stasis_dnd.testing.crm_emulator import CrmEmulator

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"


@pytest.fixture(scope="module")
def demo() -> Iterator[ModuleType]:
    """The script sandbox/demo as a module (it has no .py suffix)."""
    sys.path.insert(0, str(SANDBOX))  # its sibling sandbox_config
    loader = importlib.machinery.SourceFileLoader("sandbox_demo", str(SANDBOX / "demo"))
    spec = importlib.util.spec_from_loader("sandbox_demo", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sandbox_demo"] = module  # dataclasses look their module up
    loader.exec_module(module)
    yield module
    del sys.modules["sandbox_demo"]
    sys.path.remove(str(SANDBOX))


@pytest.fixture
def crm(demo: ModuleType) -> Iterator[CrmEmulator]:
    with CrmEmulator(demo.CRM_USER, demo.CRM_PASSWORD) as emulator:
        yield emulator


def file_request(crm: CrmEmulator, phone: str) -> None:
    requests.post(
        f"{crm.url}/admin/dynamic.do",
        data={
            "action": "runDynamicClass",
            "class": "ru.bgcrm.dyn.utils.asterisk.AsteriskIn",
            "aon": phone,
            "responseType": "json",
            "j_username": "demo-robot",
            "j_password": "demo-secret",
        },
        timeout=10,
    )


def ended(demo: ModuleType, title: str, outcome: str) -> Any:
    scenario = next(s for s in demo.SCENARIOS if s.title.startswith(title))
    return demo.Call(scenario, time.time(), "chan-" + title, outcome=outcome, ending="hung_up")


def test_every_expected_outcome_is_one_the_app_logs(demo: ModuleType) -> None:
    assert {s.expected for s in demo.SCENARIOS} <= {o.value for o in Outcome}


def test_every_phone_script_is_in_the_sandbox_dialplan(demo: ModuleType) -> None:
    dialplan = (SANDBOX / "extensions-sandbox.conf").read_text()
    callers = dialplan.split("[test-caller]")[1].split("\n[")[0]
    patterns = re.findall(r"^exten => (\S+?),1,", callers, flags=re.M)
    # Asterisk patterns start with "_"; "." matches one or more characters.
    matchers = [re.escape(p[1:]).replace(r"\.", ".+") if p[0] == "_" else p for p in patterns]
    for scenario in demo.SCENARIOS:
        assert any(re.fullmatch(m, scenario.script) for m in matchers), scenario.script


def test_the_verdict_needs_the_expected_outcome_and_crm_requests(
    demo: ModuleType, crm: CrmEmulator
) -> None:
    pressed = ended(demo, "presses 1 during the prompt", "callback")
    silent = ended(demo, "stays silent", "timeout")
    file_request(crm, "+79005550101")
    lines, ok = demo.summary([pressed, silent], crm)
    assert ok, lines

    silent.outcome = "invalid"
    lines, ok = demo.summary([pressed, silent], crm)
    assert not ok
    assert lines[-1].split()[-1] == "FAILED"

    silent.outcome = "timeout"
    file_request(crm, "+79005550103")  # a request for a caller who never pressed 1
    _, ok = demo.summary([pressed, silent], crm)
    assert not ok

    crm.clear()  # pressed 1, but nothing reached the CRM
    _, ok = demo.summary([pressed, silent], crm)
    assert not ok


def test_a_crm_request_matching_no_caller_fails_the_demo(
    demo: ModuleType, crm: CrmEmulator
) -> None:
    hidden = ended(demo, "calls with a hidden number", "no_callerid")
    file_request(crm, "anonymous")
    lines, ok = demo.summary([hidden], crm)
    assert not ok
    assert "1 request(s) matching no caller" in lines[-1]


def test_transcript_masks_the_crm_password(demo: ModuleType, crm: CrmEmulator) -> None:
    call = ended(demo, "presses 1 during the prompt", "callback")
    file_request(crm, "+79005550101")

    class NoEvents:
        def events_of(self, channel_id: str) -> list[dict[str, Any]]:
            return []

    text = "\n".join(demo.transcript(call, NoEvents(), crm))
    assert 'aon="+79005550101"' in text
    assert "j_password=***" in text
    assert "demo-secret" not in text


def test_the_transcript_tells_who_hung_up(demo: ModuleType) -> None:
    def line(event: dict[str, Any], seen: dict[str, float]) -> str | None:
        return demo.event_line({"type": "ChannelHangupRequest", **event}, 1.0, seen)  # type: ignore[no-any-return]

    assert line({"cause": 16}, {}) == "the caller hangs up"
    assert line({"cause": 32, "soft": True}, {}) == "the app hangs up"
    seen: dict[str, float] = {}
    assert line({"cause": 32, "soft": True}, seen) == "the app hangs up"
    assert line({"cause": 16, "soft": True}, seen) is None  # Asterisk sends a second one


def test_without_root_it_says_so_in_one_line(
    demo: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)
    assert demo.main([]) == 1
    err = capsys.readouterr().err
    assert err == "sandbox/demo: must run as root (the sandbox Asterisk runs in a chroot)\n"
