"""ARI failing the commands that end a call: a hang-up or continue answered
with 5xx or a closed connection is retried until the channel is gone, one
that never goes through is reported once, and channels parked in the app with
no call are taken over by the periodic sweep, and an app Asterisk forgot
while its socket stayed open reconnects. No caller is left parked. A thread
that meets a bug carries on; a call whose handling raised goes back to the
dialplan.

The app runs in this process (as `stasis-dnd run` builds it), so that the
retry period and the sweep interval can be shortened."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from hostile_kit import (
    APP,
    ARI_PASSWORD,
    ARI_USER,
    CONFIRMED,
    GOODBYE,
    PROMPT,
    SORRY,
    readback,
    requested,
    wait,
)

from stasis_dnd.core import CallFlow, ChannelDtmfReceived, Event
from stasis_dnd.core.commands import Command
from stasis_dnd.runtime.app import App
from stasis_dnd.settings import AriSettings, IvrSettings, Settings
from stasis_dnd.testing.fake_asterisk import CONTINUED, HUNGUP_BY_APP, FakeAsterisk, FakeCall, press

StartApp = Callable[..., App]


class Store:
    """Every callback request is stored; nothing is stored from before."""

    def request(
        self,
        phone: str,
        channel_id: str,
        caller_id: str,
        context: tuple[tuple[str, str], ...] = (),
    ) -> tuple[bool, str, str]:
        return True, "stored", ""

    def stored_for_channel(self, channel_id: str) -> bool:
        return False


@pytest.fixture
def start_app(fake: FakeAsterisk, caplog: pytest.LogCaptureFixture) -> Iterator[StartApp]:
    """An app connected to the fake; stopped (drained) after the test."""
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    apps: list[App] = []

    def start(
        *,
        drain: float = 3.0,
        retry_for: float = 30.0,
        sweep: float = 60.0,
        check: float = 10.0,
        name_wait: float = 60.0,
        name_confirm: float = 6.0,
    ) -> App:
        settings = Settings(
            ari=AriSettings(
                url=fake.url,
                username=ARI_USER,
                password=ARI_PASSWORD,
                app=APP,
                read_timeout=2.0,
                drain_timeout=drain,
            ),
            # Silence confirms the read-back after digit_timeout, as in hostile_kit.
            ivr=IvrSettings(digit_timeout=0.5, entry_digit_timeout=0.5),
        )
        app = App(settings, Store(), workers=4)
        app.calls.final_commands.retry_for = retry_for
        app.sweep_interval = sweep
        app.registration_check = check
        app.name_wait_base = min(name_wait, app.name_wait_base)
        app.name_wait_cap = name_wait
        app.name_confirm = name_confirm
        app.start()
        apps.append(app)
        logged(caplog, "event=ari_connected", count=len(apps))
        fake.wait_connected(20)
        return app

    yield start
    for app in apps:
        if not app._stop.is_set():  # not already shut down by the test
            app.stop()
            app.shutdown()


def logged(caplog: pytest.LogCaptureFixture, needle: str, count: int = 1) -> None:
    """Wait until the app has logged `needle` (`count` times)."""
    wait(lambda: caplog.text.count(needle) >= count, 20, lambda: f"{needle!r} in:\n{caplog.text}")


def statuses(call: FakeCall, method: str, ending: str = "") -> list[int]:
    return [r.status for r in call.requests if r.method == method and r.path.endswith(ending)]


def metric(app: App, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("status", [500, 0], ids=["500", "connection_closed"])
def test_a_hangup_that_fails_a_few_times_is_retried_until_the_channel_is_gone(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    app = start_app()
    call = fake.place_call("+79001230001", script=[])
    fake.wait_until(lambda: PROMPT in call.media_heard(), 10, "the prompt")
    fake.fail_requests(call.id, "hangup", status=status, times=3)
    fake.wait_until(lambda: statuses(call, "DELETE") != [], 10, "the first hang-up")
    # While it is retried, other callers are served as usual.
    other = fake.place_call("+79001230002", script=press("1"))
    assert other.wait_done(20) == HUNGUP_BY_APP
    assert other.media_heard() == requested("+79001230002")
    assert call.wait_done(30) == HUNGUP_BY_APP
    assert call.media_heard() == [PROMPT, SORRY, GOODBYE]
    assert statuses(call, "DELETE") == [status, status, status, 204]
    assert f"event=hangup_failed channel={call.id} tries=1 " in caplog.text
    logged(caplog, f"event=hangup_done channel={call.id} ")
    assert metric(app, "stasis_dnd_final_command_retries_total", command="hangup") >= 1
    assert metric(app, "stasis_dnd_channels_stuck_total") == 0
    assert errors(caplog) == []
    assert fake.channels_in_app() == []


@pytest.mark.sounds(prompt=30.0)
def test_a_continue_that_fails_at_shutdown_is_retried(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = start_app(drain=0.5)
    call = fake.place_call("+79001230003", script=[])
    fake.wait_until(lambda: PROMPT in call.media_heard(), 10, "the prompt")
    fake.fail_requests(call.id, "continue", status=503, times=2)
    app.stop()
    app.shutdown()  # the drain ends: the call goes back to the dialplan
    assert call.wait_done(10) == CONTINUED
    assert statuses(call, "POST", "/continue") == [503, 503, 204]
    logged(caplog, f"event=continue_done channel={call.id} tries=3")
    assert errors(caplog) == []


def test_a_hangup_that_never_goes_through_is_reported_once_and_retried_by_the_sweep(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = start_app(retry_for=1.0, sweep=0.3)
    call = fake.place_call("+79001230004", script=[])
    fake.wait_until(lambda: PROMPT in call.media_heard(), 10, "the prompt")
    fake.fail_requests(call.id, "hangup", status=500, times=None)
    logged(caplog, "event=channel_stuck")
    # The app keeps serving while the sweep keeps trying the stuck channel.
    served = fake.place_call("+79001230005", script=press("1"))
    assert served.wait_done(20) == HUNGUP_BY_APP
    tried = len(statuses(call, "DELETE"))
    fake.wait_until(lambda: len(statuses(call, "DELETE")) > tried + 2, 20, "more tries")
    assert not call.done
    [report] = errors(caplog)
    assert report.startswith(f"event=channel_stuck channel={call.id} command=hangup tries=")
    assert metric(app, "stasis_dnd_channels_stuck_total") == 1
    fake.fail_requests(call.id, "hangup", times=0)  # ARI recovers
    assert call.wait_done(20) == HUNGUP_BY_APP
    assert call.media_heard() == [PROMPT, SORRY, GOODBYE]  # not the menu again
    assert fake.channels_in_app() == []


@pytest.mark.sounds(prompt=2.0)
def test_a_channel_recovery_missed_is_taken_over_by_the_sweep(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    start_app()
    parked = fake.place_call("+79001230006", script=[])
    fake.wait_until(lambda: PROMPT in parked.media_heard(), 10, "the prompt")
    # The next app's look at the parked channel fails: no call owns it. The
    # first app, replaced, hands the call over without touching it.
    fake.fail_requests(parked.id, "get", status=500)
    start_app(sweep=0.3)
    logged(caplog, "event=recover_failed")
    logged(caplog, f"event=orphan_channel channel={parked.id}")
    fake.wait_until(lambda: parked.media_heard().count(PROMPT) == 2, 10, "the menu again")
    parked.press("1")
    assert parked.wait_done(20) == HUNGUP_BY_APP
    assert parked.media_heard()[-1] == GOODBYE
    assert caplog.text.count("event=orphan_channel") == 1


@pytest.mark.sounds(prompt=30.0)
def test_an_app_asterisk_forgot_reconnects_and_takes_its_caller_back(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = start_app(check=0.3)
    parked = fake.place_call("+79001230007", script=[])
    fake.wait_until(lambda: PROMPT in parked.media_heard(), 10, "the prompt")
    fake.forget_app()  # the socket stays open and answers pings
    logged(caplog, "event=app_not_registered")
    logged(caplog, "event=ari_connected", count=2)
    assert fake.counters()["ws_connections"] == 2
    fake.wait_until(lambda: parked.media_heard().count(PROMPT) == 2, 10, "the menu again")
    parked.press("1")
    assert parked.wait_done(20) == HUNGUP_BY_APP
    assert parked.media_heard()[-1] == GOODBYE
    # Registered again: a new caller reaches the app, not the dialplan.
    served = fake.place_call("+79001230008", script=press("1"))
    assert served.wait_done(40) == HUNGUP_BY_APP
    assert served.media_heard()[-1] == GOODBYE
    assert caplog.text.count("event=app_not_registered") == 1
    assert metric(app, "stasis_dnd_ari_app_lost_total") == 1
    assert errors(caplog) == []


@pytest.mark.sounds(prompt=3600.0)  # accepted, started, and never ends: as after a freeze
def test_a_prompt_that_never_ends_is_stopped_and_the_caller_continued(
    fake: FakeAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stasis_dnd")
    settings = Settings(
        ari=AriSettings(url=fake.url, username=ARI_USER, password=ARI_PASSWORD, app=APP),
        ivr=IvrSettings(digit_timeout=0.5, playback_timeout=1.0),
    )
    app = App(settings, Store(), workers=4)
    app.start()
    try:
        logged(caplog, "event=ari_connected")
        fake.wait_connected(20)
        call = fake.place_call("+79001230009", script=[])
        # The watchdog gives up on the prompt: the dialplan's fallback serves the caller.
        assert call.wait_done(20) == CONTINUED
        assert [(h.media, h.outcome) for h in call.heard] == [(PROMPT, "stopped")]
        ended = call.heard[0].ended
        assert ended is not None and ended - call.heard[0].started >= 1.0
        logged(caplog, f"event=flow_warning channel={call.id} ")
        assert caplog.text.count("event=flow_warning") == 1
        assert "neither finished nor failed within 1 s" in caplog.text
        assert fake.channels_in_app() == []
        assert errors(caplog) == []
    finally:
        app.stop()
        app.shutdown()


def test_a_call_whose_handling_raises_goes_back_to_the_dialplan(
    fake: FakeAsterisk,
    start_app: StartApp,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = CallFlow.handle

    def handle(flow: CallFlow, event: Event) -> list[Command]:
        if isinstance(event, ChannelDtmfReceived) and flow.phone == "+79001230010":
            raise RuntimeError("a bug that only this caller meets")
        return real(flow, event)

    monkeypatch.setattr(CallFlow, "handle", handle)
    app = start_app()
    broken = fake.place_call("+79001230010", script=press("1", after=0.1))
    other = fake.place_call("+79001230011", script=press("1", after=0.1))
    assert broken.wait_done(20) == CONTINUED
    assert other.wait_done(20) == HUNGUP_BY_APP
    assert other.media_heard() == requested("+79001230011")
    [error] = errors(caplog)
    assert error.startswith(f"event=thread_error thread=call-worker key={broken.id} ")
    assert f"event=fail_safe channel={broken.id} " in caplog.text
    assert metric(app, "stasis_dnd_thread_errors_total", thread="call-worker") == 1
    logged(caplog, f"event=call channel={other.id} ")
    assert len(app.calls) == 0
    assert fake.channels_in_app() == []


def test_the_sweep_carries_on_after_an_error_that_is_not_an_ari_error(
    fake: FakeAsterisk,
    start_app: StartApp,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = start_app(sweep=0.2, check=0.2)
    real = app._rest.application
    looks: list[str] = []

    def application(name: str) -> dict[str, object]:
        looks.append(name)
        if len(looks) <= 3:
            raise ValueError("channel_ids is not a list")  # a bad JSON shape
        return real(name)

    monkeypatch.setattr(app._rest, "application", application)
    wait(lambda: len(looks) >= 6, 20, lambda: f"looks: {looks}\n{caplog.text}")
    [error] = errors(caplog)  # the traceback once; the same error again at debug
    assert error.startswith("event=thread_error thread=sweep error='ValueError: ")
    assert metric(app, "stasis_dnd_thread_errors_total", thread="sweep") == 3
    # Still sweeping: a caller parked with no call is taken over.
    served = fake.place_call("+79001230012", script=press("1", after=0.1))
    assert served.wait_done(20) == HUNGUP_BY_APP


@pytest.mark.sounds(prompt=30.0)
def test_recovery_asks_again_when_asterisk_fails_to_list_the_parked_channels(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    start_app()
    parked = fake.place_call("+79001230013", script=[])
    fake.wait_until(lambda: PROMPT in parked.media_heard(), 10, "the prompt")
    fake.fail_application(status=500, times=2)
    fake.restart()  # the socket is cut; the caller stays parked
    logged(caplog, "event=ari_connected", count=2)
    logged(caplog, f"event=recovered channel={parked.id} ")
    fake.wait_until(lambda: parked.media_heard().count(PROMPT) == 2, 10, "the menu again")
    assert caplog.text.count("event=recovery_failed") == 1  # the second failure at debug
    parked.press("1")
    assert parked.wait_done(20) == HUNGUP_BY_APP
    assert parked.media_heard()[-1] == GOODBYE


@pytest.mark.sounds(prompt=3.0)
def test_a_replaced_app_waits_for_the_name_and_takes_it_back_when_free(
    fake: FakeAsterisk, start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    first = start_app(sweep=0.2, check=0.2, name_wait=0.2, name_confirm=0.3)
    parked = fake.place_call("+79001230014", script=[])
    fake.wait_until(lambda: PROMPT in parked.media_heard(), 10, "the prompt")
    second = start_app()
    logged(caplog, "event=app_replaced")
    # The second takes the parked caller over; the first hands it over untouched.
    fake.wait_until(lambda: parked.media_heard().count(PROMPT) == 2, 10, "the menu again")
    parked.press("1")
    assert parked.wait_done(20) == HUNGUP_BY_APP
    callbacks = "stasis_dnd_calls_total"
    logged(caplog, f"event=call channel={parked.id} ")
    assert metric(second, callbacks, outcome="callback") == 1
    checks = "stasis_dnd_app_name_checks_total"
    wait(lambda: metric(first, checks, result="held") >= 10, 20, lambda: caplog.text)
    # Ten looks at the held name later: no tug of war over it.
    assert fake.counters()["ws_connections"] == 2
    assert fake.counters()["ws_replaced"] == 1
    assert len(first.calls) == 0
    # Nothing of the first's reached the caller it handed over (one prompt each).
    confirmed = [readback("+79001230014"), CONFIRMED, GOODBYE]
    assert parked.media_heard() == [PROMPT, PROMPT, *confirmed]
    # Ctrl-C on the second: it drains, and the name is free again.
    second.stop()
    second.shutdown()
    logged(caplog, "event=app_name_free app=stasis-dnd (nobody holds it; reconnecting)")
    logged(caplog, "event=ari_connected", count=3)
    assert metric(first, checks, result="free") == 2
    fake.wait_connected(10)
    served = fake.place_call("+79001230015", script=press("1", after=0.1))
    assert served.wait_done(20) == HUNGUP_BY_APP
    logged(caplog, f"event=call channel={served.id} ")
    assert metric(first, callbacks, outcome="callback") == 1
    assert metric(first, "stasis_dnd_app_replaced_total") == 1
    assert fake.counters()["ws_replaced"] == 1
    assert errors(caplog) == []
