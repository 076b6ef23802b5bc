"""A TrainStage as a Kubeflow Trainer `trainer.kubeflow.org/v1alpha1` TrainJob.

The trainer (image, command, nodes, processes, resources, env) goes in `spec.trainer`; everything about the pod
goes through `runtimePatches`, which accept far less than a PodTemplateSpec. What they cannot express is an
error naming the field, never silently dropped.
"""

from __future__ import annotations

from typing import Any

from sailvl.api import TrainStage
from sailvl_operator.builders.meta import ATTEMPT_LABEL, BuildError, child_labels
from sailvl_operator.builders.pods import merge, resources, restricted
from sailvl_operator.builders.train import (
    PYTORCH_CONTAINER,
    TRAIN_MODULE,
    BuildContext,
    job_metadata,
    pod_template_fragment,
    processes_per_node,
    resolve,
    trainer_env,
    trainer_mounts,
    trainer_volumes,
)

TRAINER_API_GROUP = "trainer.kubeflow.org"
NODE = "node"  # the replicated job and container of Kubeflow's torch runtimes
PATCH_MANAGER = "sailvl.io/operator"

# What the published TrainJob schema lets runtimePatches set on the pod (spec.runtimePatches[].
# trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec.template).
POD_METADATA_FIELDS = frozenset({"labels", "annotations"})
POD_SPEC_FIELDS = frozenset(
    {
        "affinity",
        "containers",
        "imagePullSecrets",
        "initContainers",
        "nodeSelector",
        "schedulingGates",
        "securityContext",
        "serviceAccountName",
        "terminationGracePeriodSeconds",
        "tolerations",
        "volumes",
    }
)
CONTAINER_FIELDS = frozenset({"name", "env", "securityContext", "volumeMounts"})
# `resources` of the trainer container is not patchable, but it is exactly spec.trainer.resourcesPerNode.
TRAINER_CONTAINER_FIELDS = CONTAINER_FIELDS | {"resources"}


def _unsupported(field: str, what: str, allowed: frozenset[str]) -> BuildError:
    return BuildError(
        field,
        f"a TrainJob cannot set {what} (its runtimePatches accept {', '.join(sorted(allowed))}); "
        "set it in the training runtime, or use runtime.kind PyTorchJob",
    )


def _check_fragment(fragment: dict[str, Any]) -> None:
    where = "spec.runtime.podTemplate"
    for key in sorted(set(fragment.get("metadata", {})) - POD_METADATA_FIELDS):
        raise _unsupported(f"{where}.metadata.{key}", f"pod metadata {key}", POD_METADATA_FIELDS)
    spec = fragment.get("spec", {})
    for key in sorted(set(spec) - POD_SPEC_FIELDS):
        raise _unsupported(f"{where}.spec.{key}", key, POD_SPEC_FIELDS)
    for list_key in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(list_key, [])):
            name = container.get("name") if isinstance(container, dict) else None
            trainer = list_key == "containers" and name in (PYTORCH_CONTAINER, NODE)
            if list_key == "containers" and not trainer:
                raise BuildError(
                    f"{where}.spec.containers[{i}].name",
                    f"a TrainJob can only patch the trainer container ({PYTORCH_CONTAINER!r}); found {name!r}",
                )
            allowed = TRAINER_CONTAINER_FIELDS if trainer else CONTAINER_FIELDS
            for key in sorted(set(container) - allowed):
                raise _unsupported(f"{where}.spec.{list_key}[{i}].{key}", f"container {key}", allowed)


def build_trainjob(stage: TrainStage, ctx: BuildContext) -> dict[str, Any]:
    """A trainer.kubeflow.org/v1alpha1 TrainJob referring to the torch runtime named in the settings."""
    runtime = stage.spec.runtime
    resolved = resolve(stage, ctx)
    fragment = pod_template_fragment(stage)
    _check_fragment(fragment)
    user_spec = dict(fragment.get("spec", {}))
    # The same podTemplate serves both kinds: the trainer container is `pytorch` in a PyTorchJob, `node` here.
    user_spec["containers"] = [
        {**c, "name": NODE} if c.get("name") == PYTORCH_CONTAINER else c for c in user_spec.get("containers", [])
    ]
    base_spec = {
        "containers": [{"name": NODE, "volumeMounts": trainer_mounts(resolved)}],
        "volumes": trainer_volumes(stage, resolved),
    }
    pod_spec = restricted(merge(base_spec, user_spec))
    node = pod_spec["containers"][0]
    per_node = merge(resources(runtime.cpu, runtime.memory, runtime.gpus_per_node), node.pop("resources", {}))
    trainer: dict[str, Any] = {
        "image": runtime.image or ctx.settings.image,
        # node rank, master address and port come from the PET_* variables the torch runtime sets.
        "command": ["torchrun", *TRAIN_MODULE],
        "numNodes": runtime.nodes,
        "numProcPerNode": processes_per_node(stage),
        "env": trainer_env(ctx),
    }
    if per_node:
        trainer["resourcesPerNode"] = per_node
    pod_labels = child_labels(stage, {ATTEMPT_LABEL: str(ctx.attempt)})
    pod_metadata = merge({"labels": pod_labels}, fragment.get("metadata", {}))
    replicated_job = {"name": NODE, "template": {"spec": {"template": {"metadata": pod_metadata, "spec": pod_spec}}}}
    spec: dict[str, Any] = {
        "runtimeRef": {
            "apiGroup": TRAINER_API_GROUP,
            "kind": ctx.settings.trainjob_runtime_kind,
            "name": ctx.settings.trainjob_runtime,
        },
        "trainer": trainer,
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated_job]}}},
            }
        ],
    }
    if runtime.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = runtime.active_deadline_seconds
    if runtime.queue:
        spec["suspend"] = True  # Kueue admits it by unsuspending
    return {
        "apiVersion": f"{TRAINER_API_GROUP}/v1alpha1",
        "kind": "TrainJob",
        "metadata": job_metadata(stage, ctx),
        "spec": spec,
    }
