"""`stasis-dnd run` with two profiles on the fake Asterisk: each caller is
served by the profile of their queue (its prompts, its CRM sub and class),
also when the app was killed and restarted while the caller waited."""

from __future__ import annotations

from pathlib import Path

from harness import AppProcess, write_config

from stasis_dnd.testing.crm_emulator import CrmEmulator
from stasis_dnd.testing.fake_asterisk import HUNGUP_BY_APP, FakeAsterisk, key_in, press

PROMPT = "sound:custom/IVR_DND_OPERATORS"
READBACK = "sound:custom/IVR_DND_READBACK"
SALES_CLASS = "ru.example.SalesCallback"
PROFILES = f"""
[profile:sales]
queues = 998
readback = no
sub = dndsales
class = {SALES_CLASS}
"""


def start(tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator) -> AppProcess:
    crm.also_classes = (SALES_CLASS,)
    config = write_config(tmp_path, fake, crm, PROFILES)
    facts = "[crm]\ncontext_params = queue=queue&profile=profile\n"
    config.write_text(config.read_text().replace("[crm]\n", facts))
    app = AppProcess(config).start()
    fake.wait_connected(20)
    app.wait_log("event=ari_connected")
    return app


def test_each_queue_gets_its_profiles_flow_and_crm_request(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    app = start(tmp_path, fake, crm)
    try:
        sales = fake.place_call("+79001230001", args=("TIMEOUT", "queue=998"), script=press("1"))
        support = fake.place_call(
            "+79001230002",
            args=("TIMEOUT", "queue=999"),
            script=press("1") + key_in("1", after_media=READBACK),
        )
        assert sales.wait_done(30) == HUNGUP_BY_APP
        assert support.wait_done(30) == HUNGUP_BY_APP
        assert READBACK not in " ".join(sales.media_heard())  # readback = no for sales
        assert READBACK in " ".join(support.media_heard())
        assert crm.wait_for(lambda c: len(c.delivered()) == 2)
        got = {r.param("aon"): r for r in crm.delivered()}
        first, second = got["+79001230001"], got["+79001230002"]
        assert (first.param("class"), first.param("sub")) == (SALES_CLASS, "dndsales")
        assert (first.param("queue"), first.param("profile")) == ("998", "sales")
        assert (second.param("class"), second.param("sub")) == (crm.class_name, "dndoperator")
        assert (second.param("queue"), second.param("profile")) == ("999", "default")
    finally:
        assert app.stop() == 0
        crm.also_classes = ()


def test_a_caller_recovered_after_a_restart_keeps_the_profile_of_their_queue(
    tmp_path: Path, fake: FakeAsterisk, crm: CrmEmulator
) -> None:
    first = start(tmp_path, fake, crm)
    waiting = fake.place_call("+79001230003", args=("TIMEOUT", "queue=998"))
    fake.wait_until(lambda: PROMPT in waiting.media_heard(), 10, "the first prompt")
    first.kill()
    second = AppProcess(first.config).start()
    try:
        second.wait_log(f"event=recovered channel={waiting.id}")
        fake.wait_until(lambda: waiting.media_heard().count(PROMPT) == 2, 10, "the menu again")
        waiting.press("1")
        assert waiting.wait_done(30) == HUNGUP_BY_APP
        assert crm.wait_for(lambda c: len(c.delivered()) == 1)
        (request,) = crm.delivered()
        assert (request.param("sub"), request.param("profile")) == ("dndsales", "sales")
        assert request.param("queue") == "998"  # the facts came back with the arguments
    finally:
        assert second.stop() == 0
        crm.also_classes = ()
