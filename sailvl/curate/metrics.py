"""The workers' Prometheus metrics (names and labels from `sailvl.api.metrics`), in a registry of their own so that
several runs in one process never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sailvl.api.metrics import by_name

# Requests take from tens of milliseconds (a judge's short answer) to minutes (a long caption behind a queue).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)


def _help(name: str) -> str:
    return by_name(name).help


class CurateMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        records = by_name("sailvl_curate_records_total")
        # prometheus_client appends `_total` to a counter's name on exposition.
        self.records = Counter(
            records.name.removesuffix("_total"), records.help, records.labels, registry=self.registry
        )
        self.records.labels(outcome="kept", reason="")  # from 0: a run that keeps nothing shows a kept ratio of 0
        shards = by_name("sailvl_curate_shards_done_total")
        self.shards_done = Counter(shards.name.removesuffix("_total"), shards.help, registry=self.registry)
        self.in_flight = Gauge(
            "sailvl_curate_requests_in_flight",
            _help("sailvl_curate_requests_in_flight"),
            ("model",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sailvl_curate_request_duration_seconds",
            _help("sailvl_curate_request_duration_seconds"),
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def record(self, outcome: str, reason: str) -> None:
        self.records.labels(outcome=outcome, reason=reason).inc()

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` from a daemon thread for the life of the process."""
        start_http_server(port, registry=self.registry)
