"""A TrainStage's children: the resolved spec as a ConfigMap, and the gang as a PyTorchJob or a TrainJob.

Pure functions of the stage and a `BuildContext` (settings, attempt number, and what only the cluster knows:
the checkpoint a referenced stage ended with, the output of a referenced CurationRun). No API calls.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sailvl.api import TrainStage
from sailvl_operator.builders.meta import (
    ATTEMPT_LABEL,
    QUEUE_LABEL,
    BuildError,
    child_labels,
    child_metadata,
    spec_configmap_name,
    train_job_name,
)
from sailvl_operator.builders.pods import (
    TERMINATION_LOG,
    ClaimMounts,
    merge,
    resources,
    restricted,
    shm_mount,
    shm_volume,
    template_fragment,
)
from sailvl_operator.settings import Settings

PYTORCH_CONTAINER = "pytorch"  # the container name the Kubeflow training operator expects
SPEC_DIR = "/etc/sailvl"
SPEC_KEY = "spec.json"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_KEY}"
SPEC_VOLUME = "sailvl-spec"
MASTER_PORT = 23456
TRAIN_MODULE = ("-m", "sailvl.train", "--spec", SPEC_PATH)


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """Everything a builder needs beyond the resource itself."""

    settings: Settings = field(default_factory=Settings)
    attempt: int = 0
    init_uri: str | None = None
    """The final checkpoint of the stage `model.init.stage` names (what only the cluster knows)."""
    data_uris: Mapping[str, str] = field(default_factory=dict)
    """CurationRun name to its output URI, for mixture entries (or a CurationRun's input) that name a CurationRun."""
    model_uris: Mapping[str, str] = field(default_factory=dict)
    """TrainStage name to its final checkpoint, for served models (vLLM) that name a stage."""
    model_precisions: Mapping[str, str] = field(default_factory=dict)
    """TrainStage name to its `precision`: the dtype its final checkpoint was exported in, and is served in."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Annotations of the job (e.g. the retry token it answers)."""


@dataclass(frozen=True)
class ResolvedStage:
    """The stage as the trainer receives it: references resolved, `pvc://` URIs turned into mount paths."""

    document: dict[str, Any]
    claims: ClaimMounts
    init: str | None
    data: dict[str, str]


def resolve(stage: TrainStage, ctx: BuildContext) -> ResolvedStage:
    spec = stage.spec.to_manifest()
    claims = ClaimMounts()
    model = spec["model"]
    init: str | None = None
    if stage.spec.model.init is not None:
        init = stage.spec.model.init.uri or ctx.init_uri
        if init is None:
            ref = stage.spec.model.init.stage
            raise BuildError("spec.model.init.stage", f"TrainStage/{ref} has no final checkpoint yet")
        model["init"] = {"uri": claims.local(init)}
    for part in ("vision", "language"):
        if part in model:
            model[part]["uri"] = claims.local(model[part]["uri"])
    data: dict[str, str] = {}
    for i, entry in enumerate(spec["data"]["mixture"]):
        source = entry["source"]
        if "curationRun" in source:
            run = source.pop("curationRun")
            if run not in ctx.data_uris:
                raise BuildError(f"spec.data.mixture[{i}].source.curationRun", f"CurationRun/{run} has no output yet")
            source["uri"], source["format"] = ctx.data_uris[run], "parquet"
        data[entry["name"]] = source["uri"]
        source["uri"] = claims.local(source["uri"])
    spec["checkpoint"]["uri"] = claims.local(spec["checkpoint"]["uri"], write=True)
    metadata = {"name": stage.name, **({"namespace": stage.namespace} if stage.namespace else {})}
    document = {"apiVersion": stage.api_version, "kind": stage.kind, "metadata": metadata, "spec": spec}
    return ResolvedStage(document, claims, init, data)


def build_spec_configmap(stage: TrainStage, ctx: BuildContext) -> dict[str, Any]:
    """The resolved spec the trainer reads at /etc/sailvl/spec.json."""
    resolved = resolve(stage, ctx)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(stage, spec_configmap_name(stage.name)),
        "data": {SPEC_KEY: json.dumps(resolved.document, indent=2, sort_keys=True) + "\n"},
    }


def processes_per_node(stage: TrainStage) -> int:
    return max(stage.spec.runtime.gpus_per_node, 1)


def trainer_env(ctx: BuildContext) -> list[dict[str, Any]]:
    return [
        {"name": "SAILVL_METRICS_PORT", "value": str(ctx.settings.trainer_metrics_port)},
        {"name": "SAILVL_TERMINATION_LOG", "value": TERMINATION_LOG},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def trainer_volumes(stage: TrainStage, resolved: ResolvedStage) -> list[dict[str, Any]]:
    spec_volume = {"name": SPEC_VOLUME, "configMap": {"name": spec_configmap_name(stage.name)}}
    return [spec_volume, shm_volume(), *resolved.claims.volumes()]


def trainer_mounts(resolved: ResolvedStage) -> list[dict[str, Any]]:
    spec_mount = {"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True}
    return [spec_mount, shm_mount(), *resolved.claims.mounts()]


def job_metadata(stage: TrainStage, ctx: BuildContext) -> dict[str, Any]:
    labels = {ATTEMPT_LABEL: str(ctx.attempt)}
    if stage.spec.runtime.queue:
        labels[QUEUE_LABEL] = stage.spec.runtime.queue
    return child_metadata(
        stage, train_job_name(stage.name, ctx.attempt), labels=labels, annotations=dict(ctx.annotations)
    )


def pod_template_fragment(stage: TrainStage) -> dict[str, Any]:
    return template_fragment(stage.spec.runtime.pod_template, "spec.runtime.podTemplate")


def build_pytorchjob(stage: TrainStage, ctx: BuildContext) -> dict[str, Any]:
    """A kubeflow.org/v1 PyTorchJob: Master + Workers, one torchrun per node, restarts left to the operator."""
    runtime = stage.spec.runtime
    resolved = resolve(stage, ctx)
    command = [
        "torchrun",
        # nnodes, nproc-per-node and node-rank come from PET_NNODES, PET_NPROC_PER_NODE and PET_NODE_RANK,
        # which the training operator sets; it names the master in MASTER_ADDR/MASTER_PORT.
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        *TRAIN_MODULE,
    ]
    container = {
        "name": PYTORCH_CONTAINER,
        "image": runtime.image or ctx.settings.image,
        "command": command,
        "env": trainer_env(ctx),
        "ports": [
            {"name": "pytorchjob-port", "containerPort": MASTER_PORT},
            {"name": "metrics", "containerPort": ctx.settings.trainer_metrics_port},
        ],
        "resources": resources(runtime.cpu, runtime.memory, runtime.gpus_per_node),
        "volumeMounts": trainer_mounts(resolved),
        "terminationMessagePath": TERMINATION_LOG,
        # The trainer writes JSON there on success; on a crash the log tail explains the failure instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    base = {
        "metadata": {"labels": child_labels(stage, {ATTEMPT_LABEL: str(ctx.attempt)})},
        "spec": {"containers": [container], "volumes": trainer_volumes(stage, resolved)},
    }
    template = merge(base, pod_template_fragment(stage))
    template["spec"] = restricted(template["spec"])

    def replica(count: int) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": "Never", "template": copy.deepcopy(template)}

    replicas = {"Master": replica(1)}
    if runtime.nodes > 1:
        replicas["Worker"] = replica(runtime.nodes - 1)
    # backoffLimit 0: a failed pod fails the job, and the operator restarts the whole gang from its checkpoint.
    # cleanPodPolicy Running: stragglers of a failed gang are removed, finished pods keep their exit codes.
    run_policy: dict[str, Any] = {"backoffLimit": 0, "cleanPodPolicy": "Running"}
    if runtime.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = runtime.active_deadline_seconds
    if runtime.queue:
        run_policy["suspend"] = True  # Kueue admits it by unsuspending
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": job_metadata(stage, ctx),
        "spec": {
            "nprocPerNode": str(processes_per_node(stage)),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replicas,
        },
    }
