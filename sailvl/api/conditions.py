"""Conditions as the Kubernetes API conventions define them, and the display phase derived from them.

Both the operator and the local runner record state through `set_condition`, so a resource reads the
same in `kubectl get` and in `sailvl status`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from sailvl.api.base import ApiModel, Timestamp

ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal["Pending", "Waiting", "Running", "Restarting", "Succeeded", "Failed", "Suspended"]

# Condition types.
VALID = "Valid"
DEPENDENCIES_READY = "DependenciesReady"
MODELS_READY = "ModelsReady"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
DEGRADED = "Degraded"  # an EvalSuite whose judge failed on too many replies: its scores are not to be trusted
CONDITION_TYPES = (VALID, DEPENDENCIES_READY, MODELS_READY, RUNNING, SUCCEEDED, FAILED, SUSPENDED)

# Reasons (CamelCase, as the conventions ask).
REASON_SPEC_VALID = "SpecValid"
REASON_SPEC_INVALID = "SpecInvalid"
REASON_WAITING_FOR_STAGE = "WaitingForStage"
REASON_WAITING_FOR_CURATION = "WaitingForCurationRun"
REASON_DEPENDENCIES_SUCCEEDED = "DependenciesSucceeded"
REASON_DEPENDENCY_FAILED = "DependencyFailed"
REASON_MODELS_STARTING = "ModelsStarting"
REASON_MODELS_AVAILABLE = "ModelsAvailable"
REASON_JOB_CREATED = "JobCreated"
REASON_JOB_RUNNING = "JobRunning"
REASON_RESTARTING = "Restarting"
REASON_COMPLETED = "Completed"
REASON_JOB_FAILED = "JobFailed"
REASON_RESTARTS_EXHAUSTED = "RestartsExhausted"
REASON_LOSS_NOT_FINITE = "LossNotFinite"
REASON_SUSPENDED = "SuspendedByUser"
REASON_RESUMED = "Resumed"
REASON_QUEUED = "Queued"  # the job waits for Kueue to admit it (it is suspended until then)
REASON_METRICS_UNAVAILABLE = "MetricsUnavailable"  # running, but rank 0's metrics could not be read
REASON_PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"  # no step for progressDeadlineSeconds
REASON_SPEC_REJECTED = "SpecRejected"  # the trainer refused its spec (exit code 2); never retried
REASON_JUDGE_FAILURES = "JudgeFailures"  # some benchmark's judge failed on more than 5% of the replies it was asked
REASON_JUDGE_RELIABLE = "JudgeReliable"
REASON_RETRY_REQUESTED = "RetryRequested"  # a new sailvl.io/retry token on a Failed resource


class Condition(ApiModel):
    """One aspect of a resource's state, as the Kubernetes API conventions define conditions."""

    type: str = Field(min_length=1, max_length=316, pattern=r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
    """Condition type: Valid, DependenciesReady, ModelsReady, Running, Succeeded, Failed or Suspended."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """A CamelCase, machine-readable reason for the last transition (e.g. WaitingForStage, LossNotFinite)."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation of the last transition."""
    last_transition_time: Timestamp
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was set for."""


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    found = find_condition(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """Return `conditions` with `type_` set; `lastTransitionTime` moves only when the status changes."""
    previous = find_condition(conditions, type_)
    changed = previous is None or previous.status != status
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=(now or now_rfc3339()) if changed or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    kept = [c for c in conditions if c.type != type_]
    return sorted([*kept, updated], key=lambda c: _order(c.type))


def _order(type_: str) -> tuple[int, str]:
    return (CONDITION_TYPES.index(type_) if type_ in CONDITION_TYPES else len(CONDITION_TYPES), type_)


def derive_phase(conditions: list[Condition], restarts_pending: bool = False) -> Phase:
    """The one-word phase for printer columns; conditions remain the source of truth."""
    if is_true(conditions, SUCCEEDED):
        return "Succeeded"
    if is_true(conditions, FAILED):
        return "Failed"
    if is_true(conditions, SUSPENDED):
        return "Suspended"
    valid = find_condition(conditions, VALID)
    if valid is not None and valid.status == "False":
        return "Failed"
    if restarts_pending:
        return "Restarting"
    if is_true(conditions, RUNNING):
        return "Running"
    deps = find_condition(conditions, DEPENDENCIES_READY)
    models = find_condition(conditions, MODELS_READY)
    if (deps is not None and deps.status != "True") or (models is not None and models.status != "True"):
        return "Waiting"
    return "Pending"
