"""What Deployments, batch Jobs and their pods say, read without side effects: whether a served model's replicas
are available and why not, what phase a Job is in, and the JSON a worker left in its termination message."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

JobPhase = Literal["Created", "Queued", "Running", "Succeeded", "Failed"]

# Waiting reasons that mean a container will not come up by itself (kubelet's names).
STUCK = (
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)
MESSAGE_TAIL = 600  # characters of a crashed container's message kept in a condition


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "?")


def deleting(obj: Mapping[str, Any] | None) -> bool:
    return obj is not None and bool((obj.get("metadata") or {}).get("deletionTimestamp"))


@dataclass(frozen=True)
class Availability:
    desired: int
    available: int
    current: bool  # the Deployment controller has seen the latest spec and rolled it out

    @property
    def ready(self) -> bool:
        return self.current and self.available >= self.desired


def availability(deployment: Mapping[str, Any]) -> Availability:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    current = (
        int(status.get("observedGeneration") or 0) >= generation and int(status.get("updatedReplicas") or 0) >= desired
    )
    return Availability(desired, int(status.get("availableReplicas") or 0), current)


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_TAIL else "…" + text[-MESSAGE_TAIL:]


def pod_problem(pods: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first pod whose container is stuck (crash loop, image pull) or that cannot be
    scheduled; crashes and image errors come before scheduling, since they need a change of spec to go away."""
    unschedulable = None
    for pod in pods:
        status = pod.get("status") or {}
        for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason not in STUCK:
                continue
            message = f"pod {name_of(pod)} container {container.get('name')}: {reason}"
            if waiting.get("message"):
                message += f": {waiting['message']}"
            last = (container.get("lastState") or {}).get("terminated") or {}
            if last:
                message += f" (last exit code {last.get('exitCode')}"
                message += f": {_tail(str(last['message']))})" if last.get("message") else ")"
            return str(reason), message
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False" and not unschedulable:
                reason = str(condition.get("reason") or "Unschedulable")
                unschedulable = reason, f"pod {name_of(pod)}: {reason}: {condition.get('message', '')}".rstrip(": ")
    return unschedulable


@dataclass(frozen=True)
class JobState:
    phase: JobPhase
    reason: str
    message: str
    active: int = 0
    succeeded: int = 0


def job_state(job: Mapping[str, Any]) -> JobState:
    """A batch/v1 Job's phase from its conditions (Complete, Failed, Suspended) and pod counts."""
    status = job.get("status") or {}
    true = {
        c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping) and c.get("status") == "True"
    }
    active, succeeded = int(status.get("active") or 0), int(status.get("succeeded") or 0)

    def state(phase: JobPhase, type_: str, default: str) -> JobState:
        found = true.get(type_, {})
        return JobState(phase, str(found.get("reason") or default), str(found.get("message") or ""), active, succeeded)

    if "Failed" in true:
        return state("Failed", "Failed", "JobFailed")
    if "Complete" in true:
        return state("Succeeded", "Complete", "Completed")
    if "Suspended" in true:
        return state("Queued", "Suspended", "Queued")
    if active or int(status.get("ready") or 0):
        return state("Running", "", "JobRunning")
    return state("Created", "", "JobCreated")


def _terminated(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            terminated = (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get(
                "terminated"
            )
            return terminated if isinstance(terminated, Mapping) else None
    return None


def _json(text: Any) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text) if isinstance(text, str) and text else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def results(pods: Sequence[Mapping[str, Any]], container: str) -> list[dict[str, Any]]:
    """The JSON termination messages of `container` in pods that exited 0, oldest first."""
    done = []
    for pod in pods:
        terminated = _terminated(pod, container)
        if terminated is not None and terminated.get("exitCode") == 0:
            parsed = _json(terminated.get("message"))
            if parsed is not None:
                done.append((str(terminated.get("finishedAt") or ""), parsed))
    return [parsed for _, parsed in sorted(done, key=lambda item: item[0])]


def failures(pods: Sequence[Mapping[str, Any]], container: str) -> list[tuple[int, str]]:
    """(exit code, what it said) of every `container` that failed: the `error` of its JSON message, else the
    message itself (with FallbackToLogsOnError, the log tail)."""
    found = []
    for pod in pods:
        terminated = _terminated(pod, container)
        if terminated is None or terminated.get("exitCode") in (0, None):
            continue
        message = terminated.get("message") or terminated.get("reason") or ""
        parsed = _json(message)
        said = str(parsed["error"]) if parsed is not None and "error" in parsed else str(message)
        found.append((int(terminated["exitCode"]), _tail(said)))
    return found
