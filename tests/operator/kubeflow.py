"""The Kubeflow controllers' side, played by the tests: job conditions and the pods a job would have."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.manifests import TRAIN, mutated
from tests.operator.conftest import Kube


def stage(name: str, *, after: str | None = None, **changes: Any) -> dict[str, Any]:
    """A small TrainStage; `after` makes it start from that stage's final checkpoint."""
    doc = mutated(TRAIN, {"metadata.name": name, "spec.checkpoint.uri": f"pvc://ckpt/{name}", **changes})
    if after is not None:
        doc["spec"]["model"] = {"init": {"stage": after}}
    return doc


def _condition(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastUpdateTime": now,
    }


async def set_conditions(kube: Kube, kind: str, job: str, *conditions: tuple[str, str, str]) -> None:
    await kube.patch(kind, job, {"status": {"conditions": [_condition(*c) for c in conditions]}}, status=True)


async def mark_running(kube: Kube, job: str, kind: str = "PyTorchJob") -> None:
    await set_conditions(
        kube, kind, job, ("Created", "PyTorchJobCreated", ""), ("Running", "PyTorchJobRunning", f"{job} is running")
    )


def pod(
    job: str,
    *,
    kind: str = "PyTorchJob",
    rank: int = 0,
    phase: str = "Running",
    ip: str | None = "127.0.0.1",
    exit_code: int | None = None,
    message: str = "",
) -> dict[str, Any]:
    """A trainer pod as the Kubeflow controller labels it, running or terminated with `exit_code`."""
    if kind == "TrainJob":
        labels = {
            "jobset.sigs.k8s.io/jobset-name": job,
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "batch.kubernetes.io/job-completion-index": str(rank),
        }
        container = "node"
    else:
        role = "master" if rank == 0 else "worker"
        labels = {
            "training.kubeflow.org/job-name": job,
            "training.kubeflow.org/job-role": role,
            "training.kubeflow.org/replica-type": role,
            "training.kubeflow.org/replica-index": str(rank if rank == 0 else rank - 1),
        }
        container = "pytorch"
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}}
        if message:
            state["terminated"]["message"] = message
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": container, "state": state}]}
    if ip is not None:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{job}-{'node-0' if kind == 'TrainJob' else 'master'}-{rank}", "labels": labels},
        "spec": {"containers": [{"name": container, "image": "sailvl/sailvl:test"}]},
        "status": status,
    }


async def succeed(
    kube: Kube, job: str, *, checkpoint: str, steps: int = 20, loss: float = 0.5, kind: str = "PyTorchJob"
) -> None:
    """The trainer exits 0 with its JSON result, then the job reports success."""
    result = json.dumps({"checkpoint": checkpoint, "steps": steps, "tokens": 1000 * steps, "loss": loss})
    await kube.create(pod(job, kind=kind, phase="Succeeded", exit_code=0, message=result, ip=None))
    done = ("Complete", "JobsCompleted", "") if kind == "TrainJob" else ("Succeeded", "PyTorchJobSucceeded", "done")
    await set_conditions(kube, kind, job, ("Created", "Created", ""), done)


async def fail(
    kube: Kube, job: str, *, exit_code: int = 1, message: str = "worker 1 lost", kind: str = "PyTorchJob"
) -> None:
    """A rank dies with `exit_code`, then the job reports failure with the controller's reason and message."""
    await kube.create(pod(job, kind=kind, rank=1, phase="Failed", exit_code=exit_code, ip=None))
    await set_conditions(kube, kind, job, ("Created", "Created", ""), ("Failed", "PyTorchJobFailed", message))
