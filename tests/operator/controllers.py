"""The built-in controllers' side, played by the tests: Deployment availability, batch Job conditions, and the
pods they would run (vLLM servers stuck in a crash loop, workers that exit with a termination message)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.operator.conftest import Kube

OWNED = ("app.kubernetes.io/managed-by", "sailvl.io/kind", "sailvl.io/name")


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def owner_labels(kind: str, name: str, component: str, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "sailvl-operator",
        "sailvl.io/kind": kind,
        "sailvl.io/name": name,
        "sailvl.io/component": component,
        **extra,
    }


def availability(deployment: dict[str, Any], available: int | None = None) -> dict[str, Any]:
    """The status the Deployment controller writes once `available` (default: all) replicas answer."""
    replicas = deployment["spec"]["replicas"]
    count = replicas if available is None else available
    return {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": count,
        "availableReplicas": count,
    }


async def make_available(kube: Kube, name: str, available: int | None = None) -> None:
    deployment = kube.get("Deployment", name)
    assert deployment is not None, f"no Deployment {name}"
    await kube.patch("Deployment", name, {"status": availability(deployment, available)}, status=True)


def job_status(*conditions: tuple[str, str, str], active: int = 0, succeeded: int = 0) -> dict[str, Any]:
    return {
        "active": active,
        "succeeded": succeeded,
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": r,
                "message": m,
                "lastTransitionTime": now(),
                "lastProbeTime": now(),
            }
            for t, r, m in conditions
        ],
    }


async def set_job(
    kube: Kube, name: str, *conditions: tuple[str, str, str], active: int = 0, succeeded: int = 0
) -> None:
    await kube.patch("Job", name, {"status": job_status(*conditions, active=active, succeeded=succeeded)}, status=True)


def server_pod(kind: str, owner: str, slot: str, *, reason: str, message: str = "", index: int = 0) -> dict[str, Any]:
    """A vLLM pod whose container waits with `reason` (CrashLoopBackOff, ImagePullBackOff ...)."""
    waiting = {"reason": reason, **({"message": message} if message else {})}
    last = {"terminated": {"exitCode": 1, "reason": "Error", "message": "CUDA out of memory while loading weights"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{owner}-vllm-{slot}-5d8f7-{index}",
            "labels": owner_labels(kind, owner, "vllm", **{"sailvl.io/model": slot}),
        },
        "spec": {"containers": [{"name": "vllm", "image": "sailvl/sailvl:test"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "vllm", "ready": False, "restartCount": 3, "state": {"waiting": waiting}, "lastState": last}
            ],
        },
    }


def worker_pod(
    kind: str,
    owner: str,
    component: str,
    container: str,
    *,
    exit_code: int,
    message: dict[str, Any] | str,
    index: int = 0,
) -> dict[str, Any]:
    """A finished pod of a worker Job: its container exited with `exit_code` and left `message`."""
    text = message if isinstance(message, str) else json.dumps(message)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{owner}-{component}-{index}-x7k2p",
            "labels": {**owner_labels(kind, owner, component), "batch.kubernetes.io/job-completion-index": str(index)},
        },
        "spec": {"containers": [{"name": container, "image": "sailvl/sailvl:test"}]},
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container,
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "message": text,
                            "finishedAt": now(),
                        }
                    },
                }
            ],
        },
    }


def worker_message(index: int, shards: int, records_in: int, kept: int, **dropped: int) -> dict[str, Any]:
    """What `sailvl curate --worker I` writes: in = kept + dropped + rejected."""
    rejected = {"bad_image": records_in - kept - sum(dropped.values())}
    return {"worker": index, "shards": shards, "in": records_in, "kept": kept, "dropped": dropped, "rejected": rejected}
