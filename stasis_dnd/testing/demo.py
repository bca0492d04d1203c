"""`stasis-dnd demo`: simulated calls through the IVR, printed as transcripts.

Each scenario is a conversation driven by the test kit (no Asterisk needed):
what the caller hears and presses, and the callback request the CRM would get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stasis_dnd.config import load_settings
from stasis_dnd.settings import Settings
from stasis_dnd.testing.conversation import Conversation


@dataclass(frozen=True)
class Scenario:
    title: str
    options: dict[str, object]
    caller: Callable[[Conversation], None]


def _press_during_prompt(call: Conversation) -> None:
    call.wait(1.2)
    call.press("1")


def _press_after_prompt(call: Conversation) -> None:
    call.wait(3.0)
    call.press("1")


def _wrong_key(call: Conversation) -> None:
    call.wait(2.5)
    call.press("5")


def _silence(call: Conversation) -> None:
    pass


def _confirm_read_back(call: Conversation) -> None:
    call.wait(1.2)
    call.press("1")
    call.wait(4.0)
    call.press("1")


def _key_in_a_number(call: Conversation) -> None:
    call.wait(1.2)
    call.press("1")
    call.wait(3.0)
    call.press("84951234567#")
    call.wait(4.0)
    call.press("1")


def _another_number(call: Conversation) -> None:
    call.wait(1.2)
    call.press("1")
    call.wait(3.0)
    call.press("2")
    call.wait(1.0)
    call.press("123*")  # a slip: star starts over
    call.wait(1.0)
    call.press("4951234567#")


def _hang_up(call: Conversation) -> None:
    call.wait(0.8)
    call.hang_up()


SCENARIOS = (
    Scenario(
        "presses 1 during the prompt (ringing channel, answered by the app)",
        {"number": "+7 900 123-45-67", "state": "Ring", "language": "ru"},
        _press_during_prompt,
    ),
    Scenario(
        "presses 1 after the prompt; silence confirms the number read back",
        {"number": "8 (812) 555-01-02"},
        _press_after_prompt,
    ),
    Scenario(
        "presses 1, then 1 again during the read-back",
        {"number": "+79001112233"},
        _confirm_read_back,
    ),
    Scenario(
        "calls with a hidden number, presses 1 and keys one in",
        {"number": "anonymous"},
        _key_in_a_number,
    ),
    Scenario(
        "presses 2 at the read-back and gives another number",
        {"number": "+79001112233"},
        _another_number,
    ),
    Scenario("presses a wrong key", {"number": "+79001112233"}, _wrong_key),
    Scenario("stays silent", {"number": "+79001112233"}, _silence),
    Scenario("hangs up during the prompt", {"number": "+79001112233"}, _hang_up),
    Scenario("calls with a hidden number and stays silent", {"number": "anonymous"}, _silence),
    Scenario(
        "pressed 1 while waiting in the queue (break-out)",
        {"number": "+79004445566", "args": ("breakout", "1")},
        _silence,
    ),
)


def run_demo(config: str | None = None) -> int:
    """Print every scenario's transcript; 0 when all ran."""
    settings = load_settings(config, require_secrets=False) if config else Settings()
    print("stasis-dnd demo: simulated calls through the IVR flow (no Asterisk needed)")
    print(f"CRM: {settings.crm.url} ({settings.crm.style} style, {settings.crm.method.upper()})")
    for number, scenario in enumerate(SCENARIOS, 1):
        call = Conversation(settings.ivr, **scenario.options)  # type: ignore[arg-type]
        scenario.caller(call)
        call.wait(60)  # let the call run to its end
        print(f"\nCall {number}: the caller {scenario.title}")
        for line in call.transcript:
            print("  " + line)
        crm = settings.crm
        for phone, own in zip(call.callback_requests, call.caller_ids, strict=True):
            also = f" {crm.callerid_param}={own}" if own and crm.callerid_param else ""
            print(f"  -> the CRM gets {crm.phone_param}={phone}{also} (sub={crm.sub})")
        if not call.callback_requests:
            print("  -> the CRM gets nothing")
        outcome = call.flow.outcome.value if call.flow.outcome else "-"
        ending = call.flow.ending.value if call.flow.ending else "still in the app"
        print(f"  outcome: {outcome}, ended: {ending}")
    return 0
