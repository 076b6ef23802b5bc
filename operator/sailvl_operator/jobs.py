"""What a Kubeflow job and its pods say, read without side effects.

PyTorchJob (kubeflow.org/v1) reports Created, Running, Restarting, Succeeded, Suspended and Failed conditions;
TrainJob (trainer.kubeflow.org/v1alpha1) reports Created, Suspended, Complete and Failed, and its running
state through `status.jobsStatus`. Both come down to one `JobState`, and `conditions_for` maps that onto the
stage's own conditions. The trainer's exit code and termination message come from the pods.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from sailvl.api.conditions import (
    REASON_COMPLETED,
    REASON_JOB_CREATED,
    REASON_JOB_FAILED,
    REASON_JOB_RUNNING,
    REASON_QUEUED,
    REASON_RESTARTING,
    RUNNING,
    SUCCEEDED,
    ConditionStatus,
)

JobPhase = Literal["Created", "Queued", "Running", "Restarting", "Succeeded", "Failed"]

EXIT_INVALID_SPEC = 2  # DESIGN §5: never retried
EXIT_LOSS_NOT_FINITE = 3  # DESIGN §5: never retried

PYTORCHJOB_JOB_NAME = "training.kubeflow.org/job-name"
PYTORCHJOB_ROLE = "training.kubeflow.org/job-role"
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRAINER_CONTAINERS = ("pytorch", "node")


@dataclass(frozen=True)
class JobState:
    phase: JobPhase
    reason: str
    message: str
    since: str | None = None  # lastTransitionTime of the condition that decided the phase


class ConditionChange(NamedTuple):
    type: str
    status: ConditionStatus
    reason: str
    message: str


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if isinstance(c, Mapping) and c.get("status") == "True" and "type" in c}


def job_state(job: Mapping[str, Any]) -> JobState:
    """The phase a job is in, with the reason and message of the condition that says so."""
    true = _true_conditions(job)
    name = job.get("metadata", {}).get("name", "?")

    def state(phase: JobPhase, kind: str, default: str) -> JobState:
        found = true.get(kind, {})
        return JobState(
            phase, str(found.get("reason") or default), str(found.get("message") or ""), found.get("lastTransitionTime")
        )

    if "Failed" in true:
        return state("Failed", "Failed", REASON_JOB_FAILED)
    if "Succeeded" in true:
        return state("Succeeded", "Succeeded", REASON_COMPLETED)
    if "Complete" in true:
        return state("Succeeded", "Complete", REASON_COMPLETED)
    if "Suspended" in true:
        return state("Queued", "Suspended", REASON_QUEUED)
    if "Restarting" in true:
        return state("Restarting", "Restarting", REASON_RESTARTING)
    if "Running" in true:
        return state("Running", "Running", REASON_JOB_RUNNING)
    jobs = (job.get("status") or {}).get("jobsStatus") or []
    if any((j.get("active") or 0) > 0 for j in jobs if isinstance(j, Mapping)):  # TrainJob: a JobSet is running
        created = true.get("Created", {})
        return JobState("Running", REASON_JOB_RUNNING, f"{name}: pods running", created.get("lastTransitionTime"))
    return state("Created", "Created", REASON_JOB_CREATED)


def conditions_for(job: Mapping[str, Any]) -> list[ConditionChange]:
    """The stage conditions a job's own conditions imply. A failed job only stops `Running`: whether the stage
    restarts or fails is the reconciler's decision (it knows `maxRestarts` and the exit codes)."""
    state = job_state(job)
    name = job.get("metadata", {}).get("name", "?")
    kind = job.get("kind", "job")
    detail = f": {state.message}" if state.message else ""
    match state.phase:
        case "Created":
            return [ConditionChange(RUNNING, "False", REASON_JOB_CREATED, created_message(kind, name))]
        case "Queued":
            return [ConditionChange(RUNNING, "False", REASON_QUEUED, f"{kind} {name} is waiting for admission{detail}")]
        case "Running":
            return [ConditionChange(RUNNING, "True", REASON_JOB_RUNNING, f"{kind} {name} is running")]
        case "Restarting":
            return [ConditionChange(RUNNING, "False", REASON_RESTARTING, f"{kind} {name} is restarting{detail}")]
        case "Succeeded":
            done = f"{kind} {name} completed"
            return [
                ConditionChange(RUNNING, "False", REASON_COMPLETED, done),
                ConditionChange(SUCCEEDED, "True", REASON_COMPLETED, done),
            ]
        case "Failed":
            return [ConditionChange(RUNNING, "False", REASON_JOB_FAILED, f"{kind} {name} failed{detail}")]


def created_message(kind: str, name: str) -> str:
    return f"{kind} {name} created; waiting for its pods"


def pod_selector(kind: str, job_name: str, *, rank0: bool = False) -> str:
    """The label selector of a job's pods (only rank 0's with `rank0`), as the Kubeflow controllers label them."""
    if kind == "TrainJob":
        selector = f"{JOBSET_NAME}={job_name}"
        return selector + (f",{JOBSET_REPLICATED_JOB}=node,{COMPLETION_INDEX}=0" if rank0 else "")
    return f"{PYTORCHJOB_JOB_NAME}={job_name}" + (f",{PYTORCHJOB_ROLE}=master" if rank0 else "")


def _trainer_status(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") in TRAINER_CONTAINERS), None)


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    status = _trainer_status(pod)
    if status is None:
        return None
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    terminated = state.get("terminated") or last.get("terminated")
    return terminated if isinstance(terminated, Mapping) else None


def exit_codes(pods: Sequence[Mapping[str, Any]]) -> list[int]:
    """Exit codes of the trainer containers that have terminated."""
    codes = []
    for pod in pods:
        terminated = _terminated(pod)
        if terminated is not None and isinstance(terminated.get("exitCode"), int):
            codes.append(int(terminated["exitCode"]))
    return codes


def termination_message(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trainer's JSON result (`{checkpoint, steps, tokens, loss}`), or None if it left none."""
    terminated = _terminated(pod)
    if terminated is None or not terminated.get("message"):
        return None
    try:
        parsed = json.loads(terminated["message"])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def pod_ip(pod: Mapping[str, Any]) -> str | None:
    status = pod.get("status") or {}
    ip = status.get("podIP")
    return str(ip) if ip and status.get("phase") == "Running" else None


def is_rank0(pod: Mapping[str, Any], kind: str) -> bool:
    """Whether `pod` runs node rank 0 (the master of a PyTorchJob, index 0 of a TrainJob's nodes)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if kind == "TrainJob":
        return labels.get(COMPLETION_INDEX) == "0" and labels.get(JOBSET_REPLICATED_JOB, "node") == "node"
    return labels.get(PYTORCHJOB_ROLE) == "master"
