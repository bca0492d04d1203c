"""Prometheus metrics of a running app (`[metrics] listen`, off by default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class CallbackStats:
    """Counters since start (for metrics), plus what the outbox holds now."""

    stored: int
    duplicates: int
    sent_directly: int
    failed: int
    delivered: int
    dead: int  # dead-lettered since start
    attempts_failed: int
    pending: int
    # Dead requests in the outbox now, waiting for `outbox retry` or `purge`.
    dead_kept: int
    # True while delivery is paused because the CRM rejects the login.
    bad_credentials: bool


class Metrics:
    """The app's metrics in a registry of their own (tests create many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "stasis_dnd_calls", "Calls finished, by outcome", ["outcome"], registry=self.registry
        )
        self.callback_requests = Counter(
            "stasis_dnd_callback_requests",
            "Callback requests filed by callers, by result (stored, duplicate, sent, failed)",
            ["result"],
            registry=self.registry,
        )
        self.active_calls = Gauge(
            "stasis_dnd_active_calls", "Calls in the app now", registry=self.registry
        )
        self.ari_connected = Gauge(
            "stasis_dnd_ari_connected", "1 while the ARI event socket is up", registry=self.registry
        )
        self.lock_held = Gauge(
            "stasis_dnd_lock_held",
            "1 while this instance holds the lock for its Asterisk and app name "
            "(several servers; 0: standby)",
            registry=self.registry,
        )
        self.reconnects = Counter(
            "stasis_dnd_ari_reconnects", "ARI event socket reconnections", registry=self.registry
        )
        self.reregistrations = Counter(
            "stasis_dnd_ari_app_lost",
            "Times Asterisk no longer knew the app while the socket was open (reconnected)",
            registry=self.registry,
        )
        self.replaced = Counter(
            "stasis_dnd_app_replaced",
            "Times another process took the app name (this one then waited for it)",
            registry=self.registry,
        )
        self.name_checks = Counter(
            "stasis_dnd_app_name_checks",
            "Looks at whether the app name is free again, by answer (held, free, failed)",
            ["result"],
            registry=self.registry,
        )
        self.recovered = Counter(
            "stasis_dnd_channels_recovered",
            "Parked channels taken over after a (re)connect",
            registry=self.registry,
        )
        self.bad_messages = Counter(
            "stasis_dnd_bad_ari_messages",
            "ARI messages skipped as unusable",
            registry=self.registry,
        )
        self.final_retries = Counter(
            "stasis_dnd_final_command_retries",
            "Hang-ups and continues sent again after ARI failed, by command",
            ["command"],
            registry=self.registry,
        )
        self.stuck_channels = Counter(
            "stasis_dnd_channels_stuck",
            "Channels whose hang-up or continue still failed after 30 s of retries",
            registry=self.registry,
        )
        self.thread_errors = Counter(
            "stasis_dnd_thread_errors",
            "Exceptions a long-lived thread caught and carried on after, by thread",
            ["thread"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stasis_dnd_event_to_command_seconds",
            "From an ARI event's arrival to the REST command it caused",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def watch_callbacks(self, stats: Callable[[], CallbackStats]) -> None:
        """Export the delivery counters and the outbox's contents, read from
        `stats()` (`CallbackService.stats`) at each scrape."""
        self.registry.register(_CallbackCollector(stats))

    def serve(self, listen: str) -> None:
        """Expose /metrics on `host:port`."""
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)


class _CallbackCollector(Collector):
    def __init__(self, stats: Callable[[], CallbackStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield CounterMetricFamily(
            "stasis_dnd_callbacks_delivered",
            "Stored callback requests the CRM accepted",
            value=stats.delivered,
        )
        yield CounterMetricFamily(
            "stasis_dnd_callbacks_dead",
            "Callback requests given up (past max_age after the minimum attempts);"
            " each also has a CRITICAL event=callback_dead log line",
            value=stats.dead,
        )
        yield CounterMetricFamily(
            "stasis_dnd_crm_attempts_failed",
            "Delivery attempts the CRM did not accept",
            value=stats.attempts_failed,
        )
        held = GaugeMetricFamily(
            "stasis_dnd_outbox_requests",
            "Requests in the outbox now, pending or dead (-1: the outbox cannot be read)",
            labels=["state"],
        )
        held.add_metric(["pending"], stats.pending)
        held.add_metric(["dead"], stats.dead_kept)
        yield held
        yield GaugeMetricFamily(
            "stasis_dnd_crm_bad_credentials",
            "1 while delivery is paused because the CRM rejects the login",
            value=int(stats.bad_credentials),
        )
