"""batch/v1 Jobs of the curation and eval workers, and the resolved spec they read, shared by CurationRun and
EvalSuite.

A worker exits 0 when done, 2 when its spec or configuration is wrong (DESIGN §5: never retried, so the Job's
podFailurePolicy fails at once), anything else when a retry may help (up to `SAILVL_WORKER_RETRIES`; an Indexed
Job counts them per index, so one bad shard does not use up the others' retries). Evictions and preemptions
(DisruptionTarget) are not failures of the worker and are retried without counting. Each worker reports its
counts in its termination message, which the operator reads from the pod.
"""

from __future__ import annotations

import json
from typing import Any

from sailvl.api import Resource
from sailvl.api.common import PodRuntime
from sailvl_operator.builders.meta import COMPONENT_LABEL, QUEUE_LABEL, child_labels, child_metadata
from sailvl_operator.builders.meta import spec_configmap_name as spec_name
from sailvl_operator.builders.pods import TERMINATION_LOG, ClaimMounts, pod_template, resources
from sailvl_operator.builders.train import SPEC_DIR, SPEC_KEY, SPEC_PATH, SPEC_VOLUME, BuildContext

EXIT_INVALID_SPEC = 2

__all__ = ["SPEC_PATH", "build_job", "resolved_configmap", "worker_container"]


def resolved_configmap(owner: Resource, spec: dict[str, Any]) -> dict[str, Any]:
    """The resolved spec (references replaced by URIs, claims by mount paths) at /etc/sailvl/spec.json."""
    metadata = {"name": owner.name, **({"namespace": owner.namespace} if owner.namespace else {})}
    document = {"apiVersion": owner.api_version, "kind": owner.kind, "metadata": metadata, "spec": spec}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, spec_name(owner.name)),
        "data": {SPEC_KEY: json.dumps(document, indent=2, sort_keys=True) + "\n"},
    }


def worker_container(
    name: str,
    command: list[str],
    runtime: PodRuntime,
    ctx: BuildContext,
    claims: ClaimMounts,
    *,
    env: list[dict[str, str]],
    metrics: bool,
) -> dict[str, Any]:
    env = [
        *env,
        {"name": "SAILVL_TERMINATION_LOG", "value": TERMINATION_LOG},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    container: dict[str, Any] = {"name": name, "image": runtime.image or ctx.settings.image, "command": command}
    if metrics:
        env.append({"name": "SAILVL_METRICS_PORT", "value": str(ctx.settings.worker_metrics_port)})
        container["ports"] = [{"name": "metrics", "containerPort": ctx.settings.worker_metrics_port, "protocol": "TCP"}]
    container["env"] = env
    container["resources"] = resources(runtime.cpu, runtime.memory, 0)
    container["volumeMounts"] = [{"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True}, *claims.mounts()]
    container["terminationMessagePath"] = TERMINATION_LOG
    # The worker writes its JSON counts there; on a crash the log tail explains the failure instead.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def failure_policy(container: str) -> dict[str, Any]:
    return {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "In", "values": [2]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def build_job(
    owner: Resource,
    ctx: BuildContext,
    *,
    name: str,
    component: str,
    container: dict[str, Any],
    runtime: PodRuntime,
    claims: ClaimMounts,
    field: str,
    workers: int | None = None,
) -> dict[str, Any]:
    """A Job of one pod, or with `workers` an Indexed Job of that many (JOB_COMPLETION_INDEX tells each its index)."""
    extra = {COMPONENT_LABEL: component}
    if runtime.queue:
        extra[QUEUE_LABEL] = runtime.queue
    spec_volume = {"name": SPEC_VOLUME, "configMap": {"name": spec_name(owner.name)}}
    base = {
        "metadata": {"labels": child_labels(owner, extra)},
        "spec": {"restartPolicy": "Never", "containers": [container], "volumes": [spec_volume, *claims.volumes()]},
    }
    template = pod_template(base, runtime.pod_template, f"{field}.podTemplate", labels=child_labels(owner, extra))
    spec: dict[str, Any] = {}
    retries = ctx.settings.worker_retries
    if workers is None:
        spec.update(completions=1, parallelism=1, backoffLimit=retries)
    else:
        spec.update(completions=workers, parallelism=workers, completionMode="Indexed", backoffLimitPerIndex=retries)
    spec["podFailurePolicy"] = failure_policy(container["name"])
    if runtime.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = runtime.active_deadline_seconds
    if runtime.queue:
        spec["suspend"] = True  # Kueue admits it by unsuspending
    spec["template"] = template
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, name, labels=extra),
        "spec": spec,
    }
