"""Pure builders: the Kubernetes objects the operator creates for a resource, as dicts. No API calls and
no kopf import, so `sailvl render` and the tests can call them without a cluster."""

from __future__ import annotations

from typing import Any

from sailvl.api import TrainStage
from sailvl_operator.builders.meta import BuildError, spec_configmap_name, train_job_name
from sailvl_operator.builders.train import BuildContext, ResolvedStage, build_pytorchjob, build_spec_configmap, resolve
from sailvl_operator.builders.trainjob import build_trainjob

__all__ = [
    "BuildContext",
    "BuildError",
    "ResolvedStage",
    "build_pytorchjob",
    "build_spec_configmap",
    "build_stage_children",
    "build_train_job",
    "build_trainjob",
    "resolve",
    "spec_configmap_name",
    "train_job_name",
]


def build_train_job(stage: TrainStage, ctx: BuildContext) -> dict[str, Any]:
    """The job `runtime.kind` asks for: a PyTorchJob (the default) or a TrainJob."""
    if stage.spec.runtime.kind == "TrainJob":
        return build_trainjob(stage, ctx)
    return build_pytorchjob(stage, ctx)


def build_stage_children(stage: TrainStage, ctx: BuildContext) -> list[dict[str, Any]]:
    """Everything one attempt of a stage needs, in creation order: the spec ConfigMap, then the job."""
    return [build_spec_configmap(stage, ctx), build_train_job(stage, ctx)]
