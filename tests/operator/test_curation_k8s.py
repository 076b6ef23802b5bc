"""CurationRuns against the Kubernetes emulator over HTTP, kopf in its own thread; the tests play the Deployment
and Job controllers and the kubelet (Deployment status, Job conditions, pods with termination messages) and assert
what `kubectl get` would show."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sailvl_operator.k8s import PERMISSIONS
from tests.manifests import CURATION, mutated
from tests.operator.conftest import Kube, OperatorThread, eventually, settle
from tests.operator.controllers import make_available, server_pod, set_job, worker_message, worker_pod
from tests.operator.emulator import Emulator
from tests.operator.kubeflow import stage, succeed
from tests.operator.test_permissions_k8s import served

pytestmark = pytest.mark.k8s
StartOperator = Callable[..., Awaitable[OperatorThread]]
KIND = "CurationRun"
COMPLETE = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")


def curation(name: str, **changes: Any) -> dict[str, Any]:
    """A run with one GPU captioner served from a claim, 2 workers."""
    model = {"name": "captioner", "model": {"uri": "pvc://models/captioner"}, "gpusPerReplica": 1, "replicas": 2}
    return mutated(
        CURATION,
        {"metadata.name": name, "spec.models": [model], "spec.workers": {"parallelism": 2}, **changes},
    )


def status(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.get(KIND, name) or {}).get("status") or {}


def phase(kube: Kube, name: str) -> str | None:
    return status(kube, name).get("phase")


def condition(kube: Kube, name: str, type_: str) -> dict[str, Any]:
    return kube.condition(name, type_, kind=KIND)


def replicas(kube: Kube, deployment: str) -> int | None:
    found = kube.get("Deployment", deployment)
    return None if found is None else found["spec"]["replicas"]


def reasons(kube: Kube, name: str) -> list[str]:
    return [e["reason"] for e in kube.events(name)]


async def finish_worker(kube: Kube, run: str, index: int, shards: int, records_in: int, kept: int) -> None:
    message = worker_message(index, shards, records_in, kept, judge=records_in - kept - 1)
    await kube.create(worker_pod(KIND, run, "workers", "worker", exit_code=0, message=message, index=index))


async def test_a_run_serves_its_models_then_runs_workers_then_finalize_and_gives_the_gpus_back(
    emulator: Emulator, kube: Kube, operator: OperatorThread
) -> None:
    await kube.create(curation("factory"))
    await eventually(lambda: kube.get("Deployment", "factory-vllm-captioner"), what="the captioner's Deployment")
    await eventually(lambda: kube.get("Service", "factory-vllm-captioner"), what="its Service")
    deployment = kube.get("Deployment", "factory-vllm-captioner")
    assert deployment is not None
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (KIND, "factory", True)
    await eventually(lambda: phase(kube, "factory") == "Waiting", what="Waiting for the models")
    assert condition(kube, "factory", "ModelsReady")["reason"] == "ModelsStarting"
    await make_available(kube, "factory-vllm-captioner", available=1)
    await settle(0.8)
    assert kube.all("Job") == []  # one of two replicas is not enough: workers only after ModelsReady

    await make_available(kube, "factory-vllm-captioner")
    workers = await eventually(lambda: kube.get("Job", "factory-workers"), what="the workers Job")
    # Children are created before the status that tells of them is written: read status with `eventually`.
    models = await eventually(
        lambda: (
            condition(kube, "factory", "ModelsReady").get("status") == "True"
            and condition(kube, "factory", "ModelsReady")
        ),
        what="ModelsReady",
    )
    assert "http://factory-vllm-captioner.lab.svc:8000/v1" in models["message"]
    container = workers["spec"]["template"]["spec"]["containers"][0]
    assert {
        "name": "SAILVL_MODEL_URL_CAPTIONER",
        "value": "http://factory-vllm-captioner.lab.svc:8000/v1",
    } in container["env"]
    configmap = await eventually(lambda: kube.get("ConfigMap", "factory-spec"), what="the resolved spec")
    spec = json.loads(configmap["data"]["spec.json"])["spec"]
    assert spec["output"]["uri"] == "/mnt/pvc/data/curated"
    assert kube.get("Job", "factory-finalize") is None

    await set_job(kube, "factory-workers", active=2)
    await eventually(lambda: phase(kube, "factory") == "Running", what="Running")
    await finish_worker(kube, "factory", 0, shards=4, records_in=40, kept=30)
    await set_job(kube, "factory-workers", active=1, succeeded=1)
    await eventually(lambda: status(kube, "factory").get("progress", {}).get("shardsDone") == 4, what="progress")
    assert "shardsTotal" not in status(kube, "factory")["progress"]
    await settle(0.5)
    assert kube.get("Job", "factory-finalize") is None and replicas(kube, "factory-vllm-captioner") == 2

    await finish_worker(kube, "factory", 1, shards=3, records_in=30, kept=20)
    await set_job(kube, "factory-workers", COMPLETE, succeeded=2)
    final = await eventually(lambda: kube.get("Job", "factory-finalize"), what="the finalize Job")
    assert final["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--finalize"
    await eventually(lambda: replicas(kube, "factory-vllm-captioner") == 0, what="the captioner scaled to zero")
    await eventually(lambda: status(kube, "factory")["progress"].get("shardsTotal") == 7, what="all shards counted")

    message = {"shards": 2, "samples": 44, "in": 70, "kept": 44, "dropped": {"judge": 18, "dedup": 6}, "rejected": {}}
    await kube.create(worker_pod(KIND, "factory", "finalize", "finalize", exit_code=0, message=message))
    await set_job(kube, "factory-finalize", COMPLETE, succeeded=1)
    await eventually(lambda: phase(kube, "factory") == "Succeeded", what="Succeeded")
    done = status(kube, "factory")
    assert done["output"] == {"uri": "pvc://data/curated", "shards": 2, "samples": 44}
    assert done["progress"] == {
        "shardsDone": 7,
        "shardsTotal": 7,
        "percent": 100.0,
        "samplesIn": 70,
        "samplesOut": 44,
        "dropped": {"dedup": 6, "judge": 18},
        "rejected": {},
    }
    assert done["startTime"] <= done["completionTime"]
    await eventually(lambda: "Completed" in reasons(kube, "factory"), what="the Completed Event")
    assert reasons(kube, "factory").count("JobCreated") == 2
    gauges = operator.metrics.registry
    succeeded = {"namespace": "lab", "kind": KIND, "name": "factory", "phase": "Succeeded"}
    await eventually(lambda: gauges.get_sample_value("sailvl_resource_phase", succeeded) == 1, what="the phase gauge")
    running = {**succeeded, "phase": "Running"}
    assert gauges.get_sample_value("sailvl_resource_phase", running) is None

    allowed = {(p.api_group, p.resource, verb) for p in PERMISSIONS for verb in p.verbs}
    by_the_test = {
        ("sailvl.io", "curationruns", "create"),
        ("apps", "deployments/status", "patch"),
        ("batch", "jobs/status", "patch"),
        ("", "pods", "create"),
    }
    used = served(emulator) - by_the_test
    assert used - allowed == set()
    for call in [("apps", "deployments", "create"), ("apps", "deployments", "patch"), ("", "services", "create"),
                 ("batch", "jobs", "create"), ("sailvl.io", "curationruns/status", "patch"), ("", "pods", "list")]:  # fmt: skip
        assert call in used, call


async def test_a_crash_looping_model_surfaces_its_reason_then_the_run_fails(
    kube: Kube, operator_factory: StartOperator
) -> None:
    await operator_factory(models_ready_timeout=2.0)
    await kube.create(curation("doomed"))
    await eventually(lambda: kube.get("Deployment", "doomed-vllm-captioner"), what="the Deployment")
    await make_available(kube, "doomed-vllm-captioner", available=0)
    await kube.create(server_pod(KIND, "doomed", "captioner", reason="CrashLoopBackOff", message="back-off 20s"))
    await eventually(
        lambda: condition(kube, "doomed", "ModelsReady").get("reason") == "CrashLoopBackOff", what="the reason"
    )
    message = condition(kube, "doomed", "ModelsReady")["message"]
    assert "captioner: 0 of 2 replicas available" in message and "CUDA out of memory" in message
    assert status(kube, "doomed")["message"] == message  # the headline kubectl get shows

    await eventually(lambda: phase(kube, "doomed") == "Failed", timeout=8, what="Failed past the timeout")
    failed = condition(kube, "doomed", "Failed")
    assert failed["reason"] == "ModelsNotReady" and "CrashLoopBackOff" in failed["message"]
    await eventually(lambda: replicas(kube, "doomed-vllm-captioner") == 0, what="scaled to zero")
    assert kube.all("Job") == []
    await eventually(lambda: "ModelsNotReady" in reasons(kube, "doomed"), what="the Warning Event")
    assert "CrashLoopBackOff" in reasons(kube, "doomed")


async def test_a_run_whose_captioner_is_a_stage_waits_for_that_stage(kube: Kube, operator: OperatorThread) -> None:
    captioner = {"name": "captioner", "model": {"stage": "captioner"}, "gpusPerReplica": 1}
    await kube.create(curation("recaption", **{"spec.models": [captioner]}))
    await kube.create(stage("captioner"))
    await eventually(lambda: phase(kube, "recaption") == "Waiting", what="Waiting")
    waiting = condition(kube, "recaption", "DependenciesReady")
    assert (waiting["reason"], "TrainStage/captioner" in waiting["message"]) == ("WaitingForStage", True)
    await eventually(lambda: kube.get("PyTorchJob", "captioner-train-a0"), what="the captioner's training")
    assert kube.all("Deployment") == []

    await succeed(kube, "captioner-train-a0", checkpoint="/mnt/pvc/ckpt/captioner/final")
    deployment = await eventually(lambda: kube.get("Deployment", "recaption-vllm-captioner"), what="the server")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["vllm", "serve", "/mnt/pvc/ckpt/captioner/final"]
    claims = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": "pvc-ckpt", "persistentVolumeClaim": {"claimName": "ckpt", "readOnly": True}}]
    await eventually(
        lambda: condition(kube, "recaption", "DependenciesReady").get("status") == "True", what="DependenciesReady"
    )


async def test_suspend_deletes_the_workers_and_frees_the_gpus_and_resume_starts_them_again(
    kube: Kube, operator: OperatorThread
) -> None:
    await kube.create(curation("pausable"))
    await eventually(lambda: kube.get("Deployment", "pausable-vllm-captioner"), what="the Deployment")
    await make_available(kube, "pausable-vllm-captioner")
    first = await eventually(lambda: kube.get("Job", "pausable-workers"), what="the workers")
    await set_job(kube, "pausable-workers", active=2)
    await eventually(lambda: phase(kube, "pausable") == "Running", what="Running")

    await kube.patch(KIND, "pausable", {"spec": {"suspend": True}})
    await eventually(lambda: phase(kube, "pausable") == "Suspended", what="Suspended")
    await eventually(lambda: kube.get("Job", "pausable-workers") is None, what="the Job deleted")
    assert replicas(kube, "pausable-vllm-captioner") == 0
    assert condition(kube, "pausable", "ModelsReady")["reason"] == "ModelsStopped"

    await kube.patch(KIND, "pausable", {"spec": {"suspend": False}})
    await eventually(lambda: replicas(kube, "pausable-vllm-captioner") == 2, what="the models back")
    await eventually(lambda: condition(kube, "pausable", "Suspended").get("reason") == "Resumed", what="Resumed")
    assert condition(kube, "pausable", "Suspended")["status"] == "False"
    await settle(0.5)
    assert kube.get("Job", "pausable-workers") is None  # not before the models answer again
    await make_available(kube, "pausable-vllm-captioner")
    again = await eventually(lambda: kube.get("Job", "pausable-workers"), what="a new workers Job")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    await eventually(lambda: phase(kube, "pausable") == "Pending", what="Pending: the new Job waits for its pods")
