"""EvalSuites against the Kubernetes emulator: the model under test (and a judge) served, the eval Job, and the
scores of its termination message in status and in the operator's metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.manifests import EVAL, mutated
from tests.operator.conftest import Kube, OperatorThread, eventually, settle
from tests.operator.controllers import make_available, set_job, worker_pod

pytestmark = pytest.mark.k8s
KIND = "EvalSuite"
JUDGE = {"name": "grader", "model": {"uri": "pvc://models/judge"}, "gpusPerReplica": 2, "tensorParallelSize": 2}
SCORES = {
    "results": {"shapes_vqa": 81.25, "shapes_count": 62.5},
    "average": 71.875,
    "groups": {"generalVQA": None, "ocrVQA": None, "mathKnowledge": None, "hallucination": None},
}


def suite(name: str, **changes: Any) -> dict[str, Any]:
    return mutated(EVAL, {"metadata.name": name, "spec.model": {"uri": "pvc://ckpt/align/final"}, **changes})


def status(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.get(KIND, name) or {}).get("status") or {}


def replicas(kube: Kube, deployment: str) -> int | None:
    found = kube.get("Deployment", deployment)
    return None if found is None else found["spec"]["replicas"]


async def test_an_eval_suites_scores_land_in_status_and_metrics(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(suite("probe", **{"spec.judge": JUDGE}))
    for slot in ("model", "judge"):
        await eventually(lambda slot=slot: kube.get("Deployment", f"probe-vllm-{slot}"), what=f"the {slot} server")
    judge = (kube.get("Deployment", "probe-vllm-judge") or {})["spec"]["template"]["spec"]["containers"][0]
    assert judge["command"][judge["command"].index("--served-model-name") + 1] == "grader"
    await make_available(kube, "probe-vllm-model")
    await settle(0.5)
    assert kube.all("Job") == []  # the judge is not up yet
    await make_available(kube, "probe-vllm-judge")

    job = await eventually(lambda: kube.get("Job", "probe-eval"), what="the eval Job")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAILVL_MODEL_URL_MODEL"] == "http://probe-vllm-model.lab.svc:8000/v1"
    assert env["SAILVL_MODEL_URL_JUDGE"] == "http://probe-vllm-judge.lab.svc:8000/v1"
    configmap = await eventually(lambda: kube.get("ConfigMap", "probe-spec"), what="the resolved spec")
    spec = json.loads(configmap["data"]["spec.json"])["spec"]
    assert spec["model"] == {"uri": "pvc://ckpt/align/final"} and spec["judge"]["name"] == "grader"
    await set_job(kube, "probe-eval", active=1)
    await eventually(lambda: status(kube, "probe").get("phase") == "Running", what="Running")
    assert "results" not in status(kube, "probe") or status(kube, "probe")["results"] == {}

    await kube.create(worker_pod(KIND, "probe", "eval", "eval", exit_code=0, message=SCORES))
    await set_job(kube, "probe-eval", ("Complete", "CompletionsReached", ""), succeeded=1)
    await eventually(lambda: status(kube, "probe").get("phase") == "Succeeded", what="Succeeded")
    done = status(kube, "probe")
    assert done["results"] == {"shapes_vqa": 81.25, "shapes_count": 62.5} and done["average"] == 71.875
    assert done["groups"] == {}  # the synthetic benchmarks belong to no group: nothing to show
    assert done["progress"] == {
        "benchmarksDone": 2,
        "benchmarksTotal": 2,
        "percent": 100.0,
    }  # no item counts: none reported
    for slot in ("model", "judge"):
        await eventually(lambda slot=slot: replicas(kube, f"probe-vllm-{slot}") == 0, what=f"{slot} scaled to zero")

    metrics = operator.metrics.registry
    for benchmark, score in SCORES["results"].items():
        labels = {"namespace": "lab", "suite": "probe", "benchmark": benchmark}
        assert (
            await eventually(lambda labels=labels: metrics.get_sample_value("sailvl_evalsuite_score", labels)) == score
        )
    phase = {"namespace": "lab", "kind": KIND, "name": "probe", "phase": "Succeeded"}
    await eventually(lambda: metrics.get_sample_value("sailvl_resource_phase", phase) == 1, what="the phase gauge")

    await kube.delete(KIND, "probe")
    gone = {"namespace": "lab", "suite": "probe", "benchmark": "shapes_vqa"}
    await eventually(lambda: metrics.get_sample_value("sailvl_evalsuite_score", gone) is None, what="scores dropped")
    assert metrics.get_sample_value("sailvl_resource_phase", phase) is None
