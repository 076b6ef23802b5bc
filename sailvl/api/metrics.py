"""Every Prometheus metric sailvl exports, as data: the contract between the processes that export them,
the operator that reads the trainer's, and the chart's dashboards and alerts (a test checks every PromQL
expression in the chart against this registry).

Names are as exposed on /metrics (a prometheus_client Counter named `x` is exposed as `x_total`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Exporter = Literal["operator", "trainer", "curate", "eval", "serve"]
MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Metric:
    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    exporter: Exporter


METRICS: tuple[Metric, ...] = (
    # The operator (port 8080).
    Metric("sailvl_operator_reconcile_total", "counter", ("kind", "result"), "Reconciliations by outcome.", "operator"),
    Metric(
        "sailvl_operator_reconcile_duration_seconds", "histogram", ("kind",), "Time spent in one reconcile.", "operator"
    ),
    Metric("sailvl_resources", "gauge", ("kind", "phase"), "sailvl resources by phase.", "operator"),
    Metric(
        "sailvl_resource_phase",
        "gauge",
        ("namespace", "kind", "name", "phase"),
        "1 for the current phase of each resource (alerts name the resource).",
        "operator",
    ),
    Metric(
        "sailvl_stage_progress_ratio",
        "gauge",
        ("namespace", "name"),
        "Share of a stage's budget done (0-1).",
        "operator",
    ),
    Metric("sailvl_stage_loss", "gauge", ("namespace", "name"), "Latest training loss of a stage.", "operator"),
    Metric(
        "sailvl_stage_last_progress_timestamp_seconds",
        "gauge",
        ("namespace", "name"),
        "Unix time a Running stage's step last advanced, or it started running if not yet (what "
        "progressDeadlineSeconds measures); only while Running.",
        "operator",
    ),
    Metric(
        "sailvl_job_restarts_total", "counter", ("namespace", "name"), "Whole-gang restarts of a stage.", "operator"
    ),
    Metric(
        "sailvl_evalsuite_score",
        "gauge",
        ("namespace", "suite", "benchmark"),
        "Score of an EvalSuite's model on a benchmark (0-100).",
        "operator",
    ),
    Metric(
        "sailvl_operator_watch_last_event_timestamp_seconds",
        "gauge",
        ("kind",),
        "Unix time of the last watch event received (a quiet cluster sends none; see the lag).",
        "operator",
    ),
    Metric(
        "sailvl_operator_watch_lag_seconds",
        "gauge",
        ("kind",),
        "How long the API server has held a version of a resource of this kind that the watch has not delivered "
        "(the oldest such, by the operator's periodic list; 0: the watch is current).",
        "operator",
    ),
    # The trainer, rank 0.
    Metric("sailvl_train_step", "gauge", (), "Optimizer steps done.", "trainer"),
    Metric("sailvl_train_total_steps", "gauge", (), "Optimizer steps the budget amounts to.", "trainer"),
    Metric("sailvl_train_loss", "gauge", (), "Training loss of the latest step.", "trainer"),
    Metric("sailvl_train_tokens_total", "counter", (), "Tokens trained on.", "trainer"),
    Metric("sailvl_train_tokens_per_second", "gauge", (), "Recent throughput of the whole gang.", "trainer"),
    Metric("sailvl_train_mfu_ratio", "gauge", (), "Model FLOPs utilisation (0-1).", "trainer"),
    Metric("sailvl_train_lr", "gauge", (), "Current learning rate.", "trainer"),
    Metric(
        "sailvl_train_grad_norm", "gauge", (), "Global gradient norm of the latest step, before clipping.", "trainer"
    ),
    # Curation workers.
    Metric(
        "sailvl_curate_records_total",
        "counter",
        ("outcome", "reason"),
        "Records by outcome (kept, dropped, rejected) and reason.",
        "curate",
    ),
    Metric("sailvl_curate_shards_done_total", "counter", (), "Input shards finished.", "curate"),
    Metric("sailvl_curate_requests_in_flight", "gauge", ("model",), "Requests waiting on a served model.", "curate"),
    Metric("sailvl_curate_request_duration_seconds", "histogram", ("model",), "Latency of model requests.", "curate"),
    # Evaluation.
    Metric("sailvl_eval_score", "gauge", ("benchmark",), "Score on a benchmark (0-100).", "eval"),
    Metric("sailvl_eval_items_total", "counter", ("benchmark",), "Benchmark items answered.", "eval"),
)

# Metrics vLLM documents on its /metrics endpoint that the dashboards use.
VLLM_METRICS: tuple[str, ...] = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
)

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exposed_names() -> set[str]:
    """Every series name a scrape can return: histograms add _bucket, _sum and _count."""
    names: set[str] = set(VLLM_METRICS)
    for metric in METRICS:
        names.add(metric.name)
        if metric.type == "histogram":
            names.update(metric.name + suffix for suffix in _HISTOGRAM_SUFFIXES)
    for name in VLLM_METRICS:
        if name.endswith("_seconds"):
            names.update(name + suffix for suffix in _HISTOGRAM_SUFFIXES)
    return names


def by_name(name: str) -> Metric:
    for metric in METRICS:
        if metric.name == name:
            return metric
    raise KeyError(f"no metric named {name!r} in sailvl.api.metrics")
