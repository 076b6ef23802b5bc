"""An EvalSuite's decisions without a cluster: the model under test (and a judge) first, then the eval Job, then
the scores of its termination message; each a pure function of what was observed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from sailvl_operator.reconcile import Dependency
from sailvl_operator.served import WorkloadObservation, WorkloadPlan
from sailvl_operator.settings import Settings
from sailvl_operator.suites import reconcile_suite, scores_of
from tests.manifests import EVAL, mutated
from tests.operator.controllers import availability, job_status, worker_pod

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(image="sailvl/sailvl:test")
ALIGN = Dependency(
    "TrainStage", "align", {"status": {"phase": "Succeeded", "checkpoint": {"final": "s3://ck/align/final"}}}
)
JUDGE = {"name": "grader", "model": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"}, "gpusPerReplica": 1}
COMPLETE = ("Complete", "CompletionsReached", "")


def body(changes: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = mutated(EVAL, {"metadata.namespace": "lab", "metadata.generation": 1, **(changes or {})})
    if status is not None:
        doc["status"] = copy.deepcopy(status)
    return doc


def decide(suite: dict[str, Any], deps: tuple[Dependency, ...] = (ALIGN,), **children: Any) -> WorkloadPlan:
    return reconcile_suite(WorkloadObservation(body=suite, now=NOW, dependencies=deps, **children), SETTINGS)


def condition(plan: WorkloadPlan, type_: str) -> dict[str, Any]:
    return next((c for c in plan.status.get("conditions", []) if c["type"] == type_), {})


def stored(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["generation"] = 1
    if obj["kind"] == "Deployment":
        out["status"] = availability(out, **status)
    return out


def running(changes: dict[str, Any] | None = None) -> tuple[dict[str, Any], WorkloadPlan, dict[str, Any]]:
    """A suite whose servers are up and whose eval Job was just created."""
    first = decide(body(changes))
    servers = {
        "deployments": [stored(o) for o in first.create if o["kind"] == "Deployment"],
        "services": [o for o in first.create if o["kind"] == "Service"],
    }
    plan = decide(body(changes, first.status), **servers)
    return body(changes, plan.status), plan, servers


def eval_job(plan: WorkloadPlan, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    job = copy.deepcopy(next(o for o in plan.create if o["kind"] == "Job"))
    job["status"] = job_status(*conditions)
    return job


def eval_pod(message: dict[str, Any] | str, exit_code: int = 0) -> dict[str, Any]:
    return worker_pod("EvalSuite", "align-eval", "eval", "eval", exit_code=exit_code, message=message)


def test_the_suite_waits_for_the_stage_under_test_and_its_judges_stage() -> None:
    judge_stage = {**JUDGE, "model": {"stage": "judge-sft"}}
    pending = Dependency("TrainStage", "judge-sft", {"status": {"phase": "Running"}})
    plan = decide(body({"spec.judge": judge_stage}), deps=(ALIGN, pending))
    assert plan.create == [] and condition(plan, "DependenciesReady")["reason"] == "WaitingForStage"
    assert "TrainStage/judge-sft is Running" in condition(plan, "DependenciesReady")["message"]


def test_the_eval_job_waits_for_the_model_and_the_judge() -> None:
    first = decide(body({"spec.judge": JUDGE}))
    names = [(o["kind"], o["metadata"]["name"]) for o in first.create]
    assert names == [
        ("Deployment", "align-eval-vllm-model"),
        ("Service", "align-eval-vllm-model"),
        ("Deployment", "align-eval-vllm-judge"),
        ("Service", "align-eval-vllm-judge"),
    ]
    model, judge = (stored(o) for o in first.create if o["kind"] == "Deployment")
    services = [o for o in first.create if o["kind"] == "Service"]
    suite = body({"spec.judge": JUDGE}, first.status)
    half = decide(suite, deployments=[model, stored(judge, available=0)], services=services)
    assert half.create == [] and "judge: 0 of 1 replicas available" in condition(half, "ModelsReady")["message"]
    both = decide(suite, deployments=[model, judge], services=services)
    assert [o["kind"] for o in both.create] == ["ConfigMap", "Job"]
    assert condition(both, "ModelsReady")["status"] == "True"


def test_scores_land_in_status() -> None:
    suite, plan, servers = running()
    message = {
        "results": {"shapes_vqa": 80.0, "shapes_count": 55.5},
        "average": 67.75,
        "groups": {"hallucination": None},
    }
    done = decide(suite, jobs=[eval_job(plan, COMPLETE)], pods=[eval_pod(message)], **servers)
    status = done.status
    assert status["phase"] == "Succeeded" and status["results"] == {"shapes_vqa": 80.0, "shapes_count": 55.5}
    assert status["average"] == 67.75 and status["groups"] == {}
    assert status["progress"] == {"benchmarksDone": 2, "benchmarksTotal": 2, "percent": 100.0}
    assert done.scale == [("align-eval-vllm-model", 0)]


def test_a_judge_that_failed_too_often_makes_the_suite_degraded() -> None:
    suite, plan, servers = running()
    message = {"results": {"shapes_vqa": 80.0}, "average": 80.0, "groups": {}, "degraded": {"shapes_vqa": [9, 40]}}
    done = decide(suite, jobs=[eval_job(plan, COMPLETE)], pods=[eval_pod(message)], **servers)
    degraded = condition(done, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "JudgeFailures")
    assert degraded["message"] == "shapes_vqa: the judge failed on 9 of 40 replies (scored as wrong; see results.json)"
    assert done.status["phase"] == "Succeeded"  # the scores stand, flagged
    assert [e.reason for e in done.events if e.type == "Warning"] == ["JudgeFailures"]
    healthy = decide(suite, jobs=[eval_job(plan, COMPLETE)], pods=[eval_pod({**message, "degraded": {}})], **servers)
    assert (condition(healthy, "Degraded")["status"], condition(healthy, "Degraded")["reason"]) == (
        "False",
        "JudgeReliable",
    )


def test_a_suite_without_a_message_has_no_scores() -> None:
    suite, plan, servers = running()
    done = decide(suite, jobs=[eval_job(plan, COMPLETE)], pods=[eval_pod("")], **servers)
    assert done.status["phase"] == "Succeeded" and "results" not in done.status and "average" not in done.status
    assert "progress" not in done.status
    assert [e.reason for e in done.events if e.type == "Warning"] == ["TerminationMessageMissing"]


def test_an_eval_that_refuses_its_spec_fails_and_frees_the_gpus() -> None:
    suite, plan, servers = running()
    failed = eval_job(
        plan, ("Failed", "PodFailurePolicy", "Container eval for pod lab/align-eval-eval-x failed with exit code 2")
    )
    refused = eval_pod("sailvl eval: /mnt/pvc/bench/MMStar.tsv: no such file", exit_code=2)
    out = decide(suite, jobs=[failed], pods=[refused], **servers)
    assert condition(out, "Failed")["reason"] == "SpecRejected" and "MMStar.tsv: no such file" in out.status["message"]
    assert out.scale == [("align-eval-vllm-model", 0)] and out.status["phase"] == "Failed"


def test_suspend_deletes_the_eval_and_scales_the_servers_to_zero() -> None:
    suite, plan, servers = running({"spec.judge": JUDGE})
    job = eval_job(plan)
    job["status"]["active"] = 1
    paused = decide(body({"spec.judge": JUDGE, "spec.suspend": True}, suite["status"]), jobs=[job], **servers)
    assert paused.delete == [("Job", "align-eval-eval")]
    assert sorted(paused.scale) == [("align-eval-vllm-judge", 0), ("align-eval-vllm-model", 0)]
    done_job = eval_job(plan, COMPLETE)
    message = {"results": {"shapes_vqa": 70.0}, "average": 70.0, "groups": {}}
    late = decide(
        body({"spec.judge": JUDGE, "spec.suspend": True}, suite["status"]),
        jobs=[done_job],
        pods=[eval_pod(message)],
        **servers,
    )
    assert late.delete == [] and late.status["phase"] == "Succeeded"  # finished before the suspend took effect


@pytest.mark.parametrize(
    ("message", "results", "average"),
    [
        ({"results": {"POPE": 85.0, "MME": 1500.5}, "average": 92.1}, {"POPE": 85.0, "MME": 1500.5}, 92.1),
        ({"results": {"POPE": "high", "MME": 70}, "average": None}, {"MME": 70.0}, None),
        ({"results": {"POPE": float("nan"), "OCRBench": 60.0}, "average": 60.0}, {}, 60.0),
        ({"results": {"POPE": True}}, {}, None),
    ],
)
def test_scores_take_finite_numbers_of_listed_benchmarks(
    message: dict[str, Any], results: dict[str, float], average: float | None
) -> None:
    found, mean, groups = scores_of(message, ["POPE", "MME"])
    assert (found, mean) == (results, average)
    assert groups.to_manifest() == {}


def test_groups_are_read_by_their_keys() -> None:
    _, _, groups = scores_of({"results": {}, "groups": {"generalVQA": 71.5, "ocrVQA": "n/a", "other": 3}}, [])
    assert groups.to_manifest() == {"generalVQA": 71.5}
