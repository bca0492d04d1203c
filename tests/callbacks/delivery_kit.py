"""Shared by the delivery tests: a scripted CRM and `Pass`, a Delivery without
its thread on an outbox file of its own, driven one pass at a time by a fake clock."""

from __future__ import annotations

from pathlib import Path

from callbacks_kit import CeilingJitter, FakeClock

from stasis_dnd.callbacks.crm import CrmClient, CrmOutcome, CrmResult
from stasis_dnd.callbacks.delivery import Delivery
from stasis_dnd.callbacks.outbox import Entry, Outbox
from stasis_dnd.settings import CrmSettings, OutboxSettings

DOWN = CrmResult(CrmOutcome.UNAVAILABLE, "Connection refused")
FAILED = CrmResult(CrmOutcome.FAILED, "HTTP 500", 500)
OK = CrmResult(CrmOutcome.DELIVERED, "", 200)


class ScriptedCrm(CrmClient):
    """Answers each send with the next result given (then OK); records the phones."""

    def __init__(self, *results: CrmResult) -> None:
        super().__init__(CrmSettings(timeout=3.0))
        self.results = list(results)
        self.sent: list[str] = []
        self.claims: list[float] = []

    def send(self, phone: str, request_id: str = "", **kwargs: object) -> CrmResult:
        self.sent.append(phone)
        return self.results.pop(0) if self.results else OK


class Pass:
    """A Delivery without its thread, on an outbox file of its own."""

    def __init__(
        self, folder: Path, crm: ScriptedCrm, *, poll: float = 5.0, **settings: float
    ) -> None:
        self.clock = FakeClock()
        self.crm = crm
        self.outbox = Outbox.open(str(folder / "outbox.sqlite3"))
        self.held: set[str] = set()
        self.counts: list[str] = []
        self.delivery = Delivery(
            crm.settings,
            OutboxSettings(path=str(folder / "outbox.sqlite3"), **settings),  # type: ignore[arg-type]
            crm,
            count=self.counts.append,
            clock=self.clock,
            rng=CeilingJitter(),
            held=lambda request_id: request_id in self.held,
            poll_interval=poll,
        )
        self.delivery.start(self.outbox, thread=False)

    def store(self, phone: str, request_id: str = "") -> Entry:
        return self.outbox.add(phone, "ch", request_id or phone, self.clock())

    def run(self) -> float:
        return self.delivery.deliver_due()

    def entry(self, row_id: int) -> Entry:
        found = self.outbox.get(row_id)
        assert found is not None
        return found
