"""The operator's Prometheus metrics (DESIGN §4), named and described by the registry in sailvl.api.metrics.

One `OperatorMetrics` per operator, on its own registry, so tests can run several operators in one process.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sailvl.api.manifest import KINDS
from sailvl.api.metrics import by_name

# Every outcome a reconcile counts: its plan's result, "error" (it raised) and "gone" (the resource was deleted).
RESULTS = ("ok", "waiting", "blocked", "invalid", "error", "gone")


def _help(name: str) -> str:
    return by_name(name).help


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # prometheus_client appends `_total` to counters; the registry names them as exposed.
        self.reconciles = Counter(
            "sailvl_operator_reconcile", _help("sailvl_operator_reconcile_total"), ["kind", "result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "sailvl_operator_reconcile_duration_seconds",
            _help("sailvl_operator_reconcile_duration_seconds"),
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.resources = Gauge("sailvl_resources", _help("sailvl_resources"), ["kind", "phase"], registry=r)
        self.resource_phase = Gauge(
            "sailvl_resource_phase",
            _help("sailvl_resource_phase"),
            ["namespace", "kind", "name", "phase"],
            registry=r,
        )
        self.progress = Gauge(
            "sailvl_stage_progress_ratio", _help("sailvl_stage_progress_ratio"), ["namespace", "name"], registry=r
        )
        self.loss = Gauge("sailvl_stage_loss", _help("sailvl_stage_loss"), ["namespace", "name"], registry=r)
        self.last_progress = Gauge(
            "sailvl_stage_last_progress_timestamp_seconds",
            _help("sailvl_stage_last_progress_timestamp_seconds"),
            ["namespace", "name"],
            registry=r,
        )
        self.restarts = Counter(
            "sailvl_job_restarts", _help("sailvl_job_restarts_total"), ["namespace", "name"], registry=r
        )
        self.scores = Gauge(
            "sailvl_evalsuite_score",
            _help("sailvl_evalsuite_score"),
            ["namespace", "suite", "benchmark"],
            registry=r,
        )
        self.last_event = Gauge(
            "sailvl_operator_watch_last_event_timestamp_seconds",
            _help("sailvl_operator_watch_last_event_timestamp_seconds"),
            ["kind"],
            registry=r,
        )
        self.watch_lag = Gauge(
            "sailvl_operator_watch_lag_seconds", _help("sailvl_operator_watch_lag_seconds"), ["kind"], registry=r
        )
        # Series with known labels start at 0, so a panel shows "none yet" as 0 rather than as no data.
        for kind in KINDS:
            for result in RESULTS:
                self.reconciles.labels(kind=kind, result=result)
            self.watch_lag.labels(kind=kind).set(0)
        self._phases: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) -> phase
        self._benchmarks: dict[tuple[str, str], set[str]] = {}  # (namespace, suite) -> benchmarks with a score

    def observe_phase(self, kind: str, namespace: str, name: str, phase: str | None) -> None:
        """Track one resource's phase (None: it is gone) and refresh the `sailvl_resources` gauge of its kind."""
        key = (kind, namespace, name)
        before = self._phases.pop(key, None)
        if before is not None and before != phase:  # one series per resource: its current phase, at 1
            with contextlib.suppress(KeyError):
                self.resource_phase.remove(namespace, kind, name, before)
        if phase is not None:
            self._phases[key] = phase
            self.resource_phase.labels(namespace=namespace, kind=kind, name=name, phase=phase).set(1)
        counts = Tally(p for (k, _, _), p in self._phases.items() if k == kind)
        for phase_name in ("Pending", "Waiting", "Running", "Restarting", "Succeeded", "Failed", "Suspended"):
            self.resources.labels(kind=kind, phase=phase_name).set(counts.get(phase_name, 0))

    def observe_scores(self, namespace: str, suite: str, results: Mapping[str, object] | None) -> None:
        """Export an EvalSuite's `status.results` (None or {}: it has none, or is gone)."""
        scores = {k: float(v) for k, v in (results or {}).items() if isinstance(v, int | float)}
        for benchmark in self._benchmarks.pop((namespace, suite), set()) - set(scores):
            with contextlib.suppress(KeyError):
                self.scores.remove(namespace, suite, benchmark)
        for benchmark, score in scores.items():
            self.scores.labels(namespace=namespace, suite=suite, benchmark=benchmark).set(score)
        if scores:
            self._benchmarks[(namespace, suite)] = set(scores)

    def observe_progress_since(self, namespace: str, name: str, since: float | None) -> None:
        """The time a stage last made progress while Running (None: it is not Running, so no series)."""
        if since is not None:
            self.last_progress.labels(namespace=namespace, name=name).set(since)
        else:
            with contextlib.suppress(KeyError):
                self.last_progress.remove(namespace, name)

    def forget_stage(self, namespace: str, name: str) -> None:
        for gauge in (self.progress, self.loss, self.last_progress, self.restarts):
            with contextlib.suppress(KeyError):  # never set for this stage
                gauge.remove(namespace, name)

    def serve(self, port: int, addr: str = "0.0.0.0") -> WSGIServer:
        """Serve /metrics in a thread; the returned server's `shutdown()` stops it."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
