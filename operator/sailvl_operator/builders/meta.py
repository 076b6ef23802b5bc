"""Names, labels and metadata every child object carries, whichever resource owns it.

Child names are deterministic (`<name>-train-a<attempt>`, `<name>-spec`), so a restarted operator finds what
it created instead of creating it twice. Owner references are added at creation time (`kopf.adopt`), since
only the cluster knows the owner's uid.
"""

from __future__ import annotations

from typing import Any

from sailvl.api import Resource

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "sailvl-operator"
KIND_LABEL = "sailvl.io/kind"
NAME_LABEL = "sailvl.io/name"
ATTEMPT_LABEL = "sailvl.io/attempt"
COMPONENT_LABEL = "sailvl.io/component"  # vllm, workers, finalize or eval: what a pod of a resource does
MODEL_LABEL = "sailvl.io/model"  # which served model a vLLM pod belongs to
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RETRY_ANNOTATION = "sailvl.io/retry"
MAX_NAME = 63


class BuildError(ValueError):
    """A spec the builders cannot turn into valid children; `field` is its path in the manifest."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def child_name(owner: str, suffix: str) -> str:
    name = f"{owner}-{suffix}"
    # The API caps owner names at 40 characters so that every suffix fits; this guards the invariant.
    assert len(name) <= MAX_NAME, f"child name {name!r} is longer than {MAX_NAME} characters"
    return name


def spec_configmap_name(stage: str) -> str:
    return child_name(stage, "spec")


def train_job_name(stage: str, attempt: int) -> str:
    return child_name(stage, f"train-a{attempt}")


def vllm_name(owner: str, slot: str) -> str:
    """The Deployment and Service of one served model (`slot`: a CurationRun model's name, `model` or `judge`)."""
    return child_name(owner, f"vllm-{slot}")


def workers_job_name(run: str) -> str:
    return child_name(run, "workers")


def finalize_job_name(run: str) -> str:
    return child_name(run, "finalize")


def eval_job_name(suite: str) -> str:
    return child_name(suite, "eval")


def selector_labels(resource: Resource) -> dict[str, str]:
    """The labels that identify every child of `resource` (and select them)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, KIND_LABEL: resource.kind, NAME_LABEL: resource.name}


def child_labels(resource: Resource, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The owner's own labels (children inherit them, as `kubectl get -l` users expect) plus ours."""
    labels = dict(resource.metadata.labels or {})
    labels.update(selector_labels(resource))
    labels.update(extra or {})
    return labels


def child_metadata(
    resource: Resource,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": child_labels(resource, labels)}
    if resource.namespace:
        meta["namespace"] = resource.namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
