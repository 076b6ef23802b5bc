"""Training progress from rank 0's Prometheus endpoint, parsed with prometheus_client's own parser.

The trainer exports `sailvl_train_step`, `sailvl_train_total_steps`, `sailvl_train_loss`,
`sailvl_train_tokens_total` and `sailvl_train_tokens_per_second` (sailvl.api.metrics); the ETA is the
remaining steps at the rate observed between two reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from sailvl.api.conditions import REASON_JOB_RUNNING, REASON_METRICS_UNAVAILABLE, RUNNING, find_condition, set_condition
from sailvl.api.trainstage import TrainProgress, TrainStageStatus

_NAMES = {
    "sailvl_train_step": "step",
    "sailvl_train_total_steps": "total_steps",
    "sailvl_train_loss": "loss",
    "sailvl_train_tokens_total": "tokens",
    "sailvl_train_tokens_per_second": "tokens_per_second",
}


class MetricsError(ValueError):
    """An endpoint that answered, but not with the trainer's metrics."""


@dataclass(frozen=True)
class TrainSample:
    """One read of rank 0's metrics."""

    step: int
    total_steps: int | None = None
    loss: float | None = None
    tokens: int | None = None
    tokens_per_second: float | None = None


def parse_metrics(text: str) -> TrainSample:
    """The trainer's figures from a Prometheus text exposition; raises MetricsError without `sailvl_train_step`."""
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in _NAMES and not sample.labels:
                    values[_NAMES[sample.name]] = float(sample.value)
    except ValueError as exc:
        raise MetricsError(f"not a Prometheus text exposition: {exc}") from None
    if "step" not in values:
        raise MetricsError(f"no sailvl_train_step among the metrics (found: {', '.join(sorted(values)) or 'none'})")

    def whole(key: str) -> int | None:
        value = values.get(key)
        return int(value) if value is not None and math.isfinite(value) else None

    def real(key: str) -> float | None:
        value = values.get(key)
        return value if value is not None and math.isfinite(value) else None

    return TrainSample(
        step=whole("step") or 0,
        total_steps=whole("total_steps"),
        loss=real("loss"),
        tokens=whole("tokens"),
        tokens_per_second=real("tokens_per_second"),
    )


def format_eta(seconds: float) -> str:
    """`3h12m`, `45m10s`, `12s`; days once above two days (`3d4h`)."""
    total = max(round(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days >= 2:
        return f"{days}d{hours}h"
    hours += days * 24
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def progress_since(running_since: str, last_advance: str | None) -> datetime:
    """When a Running stage last made progress: its step's last advance, or when it started running if that is
    later (a new attempt). What `progressDeadlineSeconds` and the stalled-stage alert both measure from."""
    since = _parse_time(running_since)
    return max(since, _parse_time(last_advance)) if last_advance else since


def progress_from(sample: TrainSample, previous: TrainProgress | None, now: datetime) -> TrainProgress:
    """Status progress for `sample`, with an ETA from the step rate since the step last advanced."""
    rfc_now = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    percent = None
    if sample.total_steps:
        percent = round(min(max(100.0 * sample.step / sample.total_steps, 0.0), 100.0), 2)
    advanced = previous is None or previous.last_advance_time is None or sample.step != previous.step
    eta = previous.eta if previous is not None and not advanced else None
    if previous is not None and previous.last_advance_time and sample.step > previous.step and sample.total_steps:
        elapsed = (now - _parse_time(previous.last_advance_time)).total_seconds()
        if elapsed > 0:
            rate = (sample.step - previous.step) / elapsed
            eta = format_eta((sample.total_steps - sample.step) / rate)
    if sample.total_steps is not None and sample.step >= sample.total_steps:
        eta = "0s"
    return TrainProgress(
        step=sample.step,
        total_steps=sample.total_steps,
        percent=percent,
        tokens=sample.tokens,
        loss=sample.loss,
        tokens_per_second=sample.tokens_per_second,
        eta=eta,
        last_advance_time=rfc_now if advanced else (previous.last_advance_time if previous else rfc_now),
    )


def apply_progress(
    status: TrainStageStatus, sample: TrainSample | None, error: str, now: datetime, generation: int | None
) -> TrainStageStatus:
    """`status` with a new read of rank 0 applied. A read that failed is not an error: the progress stays as it
    was and the Running condition's reason says it is stale. Only a Running stage is touched."""
    running = find_condition(status.conditions, RUNNING)
    if running is None or running.status != "True":
        return status
    new = status.model_copy(deep=True)
    job = f"{status.job.kind} {status.job.name}" if status.job is not None else "the job"
    rfc_now = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if sample is not None:
        new.progress = progress_from(sample, status.progress, now)
        reason, message = REASON_JOB_RUNNING, f"{job} is running"
    else:
        as_of = status.progress.last_advance_time if status.progress is not None else None
        stale = f"; progress is as of {as_of}" if as_of else ""
        reason, message = (
            REASON_METRICS_UNAVAILABLE,
            f"{job} is running; rank 0's metrics are unavailable: {error}{stale}",
        )
    new.conditions = set_condition(new.conditions, RUNNING, "True", reason, message, generation=generation, now=rfc_now)
    if new.message == running.message:
        new.message = message
    return new
