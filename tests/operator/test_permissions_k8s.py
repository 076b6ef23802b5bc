"""Every request the operator (kopf included) makes is covered by the permission table the chart's RBAC is
generated from: drive it through most of what it does and check each request the emulator served."""

from __future__ import annotations

import pytest

from sailvl_operator.builders.meta import MANAGED_BY
from sailvl_operator.k8s import PERMISSIONS
from tests.manifests import TRAIN, mutated
from tests.operator.conftest import Kube, OperatorThread, eventually
from tests.operator.emulator import Emulator
from tests.operator.kubeflow import fail, mark_running, stage

pytestmark = pytest.mark.k8s

VERB_OF = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def served(emulator: Emulator) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every object request the emulator served."""
    seen = set()
    for request in emulator._requests:
        resource = request.resource
        if resource is None or resource.plural is None or request.action is None:
            continue  # discovery (/api, /apis/...): non-resource URLs every authenticated client may read
        if request.method.value == "GET":
            verb = "watch" if request.params.get("watch") == "true" else "get" if request.name else "list"
        else:
            verb = VERB_OF[request.method.value]
        plural = resource.plural + (f"/{request.subresource}" if request.subresource else "")
        seen.add((resource.group or "", plural, verb))
    return seen


async def test_every_request_is_in_the_permission_table(
    emulator: Emulator, kube: Kube, operator: OperatorThread
) -> None:
    curation = {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "CurationRun",
        "metadata": {"name": "captions"},
        "spec": {
            "input": {"uri": "synthetic://shapes?n=8"},
            "output": {"uri": "s3://sailvl-curated/captions/"},
            "steps": [{"filter": {"minChars": 1}}],
        },
    }
    await kube.create(curation)
    reader = mutated(
        TRAIN,
        {"metadata.name": "reader", "spec.data.mixture": [{"name": "caps", "source": {"curationRun": "captions"}}]},
    )
    await kube.create(reader)
    await kube.create(stage("worker", **{"spec.maxRestarts": 1}))
    await eventually(lambda: kube.get("PyTorchJob", "worker-train-a0"), what="worker's job")
    await mark_running(kube, "worker-train-a0")
    await eventually(
        lambda: kube.condition("worker", "Running").get("reason") == "MetricsUnavailable", what="a progress read"
    )
    await fail(kube, "worker-train-a0")
    await eventually(lambda: kube.get("PyTorchJob", "worker-train-a1"), what="a restart")
    await kube.patch("TrainStage", "worker", {"spec": {"suspend": True}})
    await eventually(lambda: kube.get("PyTorchJob", "worker-train-a1") is None, what="suspension")
    await kube.patch(
        "CurationRun",
        "captions",
        {"status": {"phase": "Succeeded", "output": {"uri": "s3://sailvl-curated/captions/"}}},
        status=True,
    )
    await eventually(lambda: kube.get("PyTorchJob", "reader-train-a0"), what="the reader's job")

    allowed = {(p.api_group, p.resource, verb) for p in PERMISSIONS for verb in p.verbs}
    used = served(emulator)
    test_calls = {
        ("sailvl.io", "curationruns", "create"),
        ("sailvl.io", "curationruns/status", "patch"),
        ("sailvl.io", "trainstages", "create"),
        ("kubeflow.org", "pytorchjobs/status", "patch"),
        ("", "pods", "create"),
    }
    operator_calls = used - test_calls
    assert operator_calls - allowed == set()
    # The flow reached what the table is for: our writes, kopf's watches and annotations, the Events.
    for call in [
        ("sailvl.io", "trainstages/status", "patch"),
        ("sailvl.io", "trainstages", "patch"),
        ("sailvl.io", "trainstages", "watch"),
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
        ("kubeflow.org", "pytorchjobs", "create"),
        ("kubeflow.org", "pytorchjobs", "delete"),
        ("kubeflow.org", "pytorchjobs", "get"),
        ("", "pods", "list"),
        ("", "events", "create"),
    ]:
        assert call in operator_calls, call
    assert all(j["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY for j in kube.all("PyTorchJob"))
