"""The operator's decisions without a cluster: job conditions to stage conditions, restarts, exit codes,
suspend, retry, dependencies, progress; each a pure function of what was observed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from sailvl.api.trainstage import TrainProgress, TrainStageStatus
from sailvl_operator.controller import merge_patch
from sailvl_operator.jobs import ConditionChange, conditions_for, exit_codes, is_rank0, job_state, termination_message
from sailvl_operator.progress import MetricsError, TrainSample, apply_progress, format_eta, parse_metrics, progress_from
from sailvl_operator.reconcile import Dependency, Observation, Plan, reconcile
from sailvl_operator.settings import Settings
from tests.operator.kubeflow import pod, stage

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(image="sailvl/sailvl:test")


def job(kind: str, *conditions: tuple[str, str], name: str = "s-train-a0", **status: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": f"{kind}{t}",
                    "message": f"{t} says so",
                    "lastTransitionTime": "2026-03-01T11:00:00Z",
                }
                for t, s in conditions
            ],
            **status,
        },
    }


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (job("PyTorchJob", ("Created", "True")), [("Running", "False", "JobCreated")]),
        (job("PyTorchJob", ("Created", "True"), ("Running", "True")), [("Running", "True", "JobRunning")]),
        (job("PyTorchJob", ("Created", "True"), ("Suspended", "True")), [("Running", "False", "Queued")]),
        (
            job("PyTorchJob", ("Created", "True"), ("Running", "False"), ("Restarting", "True")),
            [("Running", "False", "Restarting")],
        ),
        (
            job("PyTorchJob", ("Running", "False"), ("Succeeded", "True")),
            [("Running", "False", "Completed"), ("Succeeded", "True", "Completed")],
        ),
        (job("PyTorchJob", ("Running", "True"), ("Failed", "True")), [("Running", "False", "JobFailed")]),
        (job("PyTorchJob", ("Suspended", "False"), ("Running", "True")), [("Running", "True", "JobRunning")]),
        (job("TrainJob", ("Created", "True")), [("Running", "False", "JobCreated")]),
        (
            job(
                "TrainJob",
                ("Created", "True"),
                jobsStatus=[{"name": "node", "active": 1, "ready": 1, "failed": 0, "succeeded": 0, "suspended": 0}],
            ),
            [("Running", "True", "JobRunning")],
        ),
        (job("TrainJob", ("Suspended", "True")), [("Running", "False", "Queued")]),
        (
            job("TrainJob", ("Complete", "True")),
            [("Running", "False", "Completed"), ("Succeeded", "True", "Completed")],
        ),
        (job("TrainJob", ("Failed", "True"), ("Complete", "False")), [("Running", "False", "JobFailed")]),
        ({"kind": "PyTorchJob", "metadata": {"name": "fresh"}}, [("Running", "False", "JobCreated")]),
    ],
)
def test_conditions_for(observed: dict[str, Any], expected: list[tuple[str, str, str]]) -> None:
    assert [(c.type, c.status, c.reason) for c in conditions_for(observed)] == expected


def test_a_failed_jobs_own_reason_and_message_are_kept() -> None:
    state = job_state(job("PyTorchJob", ("Running", "True"), ("Failed", "True")))
    assert (state.phase, state.reason, state.message) == ("Failed", "PyTorchJobFailed", "Failed says so")
    (change,) = conditions_for(job("PyTorchJob", ("Failed", "True")))
    assert change == ConditionChange("Running", "False", "JobFailed", "PyTorchJob s-train-a0 failed: Failed says so")


def test_exit_codes_termination_message_and_rank0() -> None:
    result = json.dumps({"checkpoint": "/mnt/pvc/ckpt/final", "steps": 3, "loss": 0.5})
    pods = [pod("j", exit_code=0, message=result), pod("j", rank=1, exit_code=3), pod("j", rank=2)]
    assert exit_codes(pods) == [0, 3]
    assert termination_message(pods[0]) == {"checkpoint": "/mnt/pvc/ckpt/final", "steps": 3, "loss": 0.5}
    assert termination_message(pod("j", exit_code=1, message="Traceback: boom")) is None
    assert [is_rank0(p, "PyTorchJob") for p in pods] == [True, False, False]
    assert is_rank0(pod("j", kind="TrainJob"), "TrainJob") and not is_rank0(
        pod("j", kind="TrainJob", rank=1), "TrainJob"
    )


def trainer_metrics(step: int, total: int | None = 100, loss: float = 2.5) -> str:
    registry = CollectorRegistry()
    Gauge("sailvl_train_step", "", registry=registry).set(step)
    if total is not None:
        Gauge("sailvl_train_total_steps", "", registry=registry).set(total)
    Gauge("sailvl_train_loss", "", registry=registry).set(loss)
    Counter("sailvl_train_tokens", "", registry=registry).inc(step * 4096)
    Gauge("sailvl_train_tokens_per_second", "", registry=registry).set(1234.5)
    Gauge("sailvl_train_lr", "", registry=registry).set(1e-4)
    return generate_latest(registry).decode()


def test_parse_metrics_reads_the_trainers_exposition() -> None:
    assert parse_metrics(trainer_metrics(10)) == TrainSample(10, 100, 2.5, 40960, 1234.5)
    with pytest.raises(MetricsError, match="no sailvl_train_step"):
        parse_metrics("# HELP other x\n# TYPE other gauge\nother 1\n")
    with pytest.raises(MetricsError, match="not a Prometheus text exposition"):
        parse_metrics("this is not { prometheus")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.4, "59s"),
        (61, "1m01s"),
        (3600 * 3 + 12 * 60, "3h12m"),
        (86400 * 1.5, "36h00m"),
        (86400 * 3 + 3600 * 4, "3d4h"),
    ],
)
def test_format_eta(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text


def test_progress_eta_comes_from_the_step_rate() -> None:
    first = progress_from(TrainSample(10, 110, 2.0), None, NOW)
    assert (first.percent, first.eta, first.last_advance_time) == (9.09, None, "2026-03-01T12:00:00Z")
    later = progress_from(TrainSample(20, 110, 1.5), first, NOW + timedelta(seconds=100))  # 0.1 step/s
    assert later.eta == "15m00s" and later.last_advance_time == "2026-03-01T12:01:40Z"
    same = progress_from(TrainSample(20, 110, 1.5), later, NOW + timedelta(seconds=500))
    assert same.last_advance_time == later.last_advance_time and same.eta == later.eta  # a stall keeps its clock


def body(doc: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["metadata"].update(namespace="lab", uid="uid-1", generation=generation)
    if status is not None:
        out["status"] = status
    return out


def run(doc: dict[str, Any], **observed: Any) -> Plan:
    return reconcile(Observation(body=doc, now=observed.pop("now", NOW), **observed), SETTINGS)


def conditions(plan: Plan) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def started(doc: dict[str, Any]) -> tuple[dict[str, Any], Plan]:
    """The stage after its first reconcile (attempt 0 created)."""
    plan = run(body(doc))
    assert plan.create and plan.result == "ok"
    return body(doc, plan.status), plan


def test_a_first_stage_creates_its_spec_and_job_once() -> None:
    first = run(body(stage("s")))
    assert [c["kind"] for c in first.create] == ["ConfigMap", "PyTorchJob"]
    assert first.status["job"] == {"kind": "PyTorchJob", "name": "s-train-a0", "attempt": 0}
    assert first.status["phase"] == "Pending" and first.status["observedGeneration"] == 1
    assert [e.reason for e in first.events] == ["JobCreated"]
    again = run(body(stage("s"), first.status), job=job("PyTorchJob", ("Created", "True")))
    assert again.create == [] and again.events == [] and merge_patch(first.status, again.status) == {}


def test_waiting_then_starting_from_the_dependencys_checkpoint() -> None:
    doc = body(stage("s", after="prev"))
    missing = run(doc, dependencies=[Dependency("TrainStage", "prev", None)])
    assert (missing.result, conditions(missing)["DependenciesReady"]) == ("waiting", ("False", "WaitingForStage"))
    assert missing.status["phase"] == "Waiting" and missing.create == []
    running = {"status": {"phase": "Running"}}
    assert run(doc, dependencies=[Dependency("TrainStage", "prev", running)]).result == "waiting"
    done = {"status": {"phase": "Succeeded", "checkpoint": {"final": "pvc://ckpt/prev/final"}}}
    plan = run(doc, dependencies=[Dependency("TrainStage", "prev", done)])
    assert plan.status["resolved"]["init"] == "pvc://ckpt/prev/final"
    spec = json.loads(plan.create[0]["data"]["spec.json"])["spec"]
    assert spec["model"]["init"]["uri"] == "/mnt/pvc/ckpt/prev/final"


def test_a_failed_dependency_fails_the_stage_until_it_is_retried() -> None:
    doc = body(stage("s", after="prev"))
    failed = run(
        doc, dependencies=[Dependency("TrainStage", "prev", {"status": {"phase": "Failed", "message": "OOM"}})]
    )
    assert failed.result == "blocked" and failed.status["phase"] == "Failed"
    assert conditions(failed)["Failed"] == ("True", "DependencyFailed") and "OOM" in failed.status["message"]
    retried = run(
        body(stage("s", after="prev"), failed.status),
        dependencies=[Dependency("TrainStage", "prev", {"status": {"phase": "Running"}})],
    )
    assert conditions(retried)["Failed"] == ("False", "DependenciesSucceeded")
    assert retried.status["phase"] == "Waiting"


def test_restarts_until_max_restarts_then_fails_with_the_jobs_reason() -> None:
    doc, _ = started(stage("s", **{"spec.maxRestarts": 1}))
    failed_job = job("PyTorchJob", ("Failed", "True"))
    first = run(doc, job=failed_job, pods=[pod("s-train-a0", rank=1, exit_code=137)])
    assert first.restarted and first.status["restarts"] == 1 and first.status["phase"] == "Restarting"
    assert first.status["job"]["name"] == "s-train-a1" and [c["kind"] for c in first.create] == [
        "ConfigMap",
        "PyTorchJob",
    ]
    assert [e.reason for e in first.events] == ["Restarting"]
    doc = body(stage("s", **{"spec.maxRestarts": 1}), first.status)
    last = run(doc, job=job("PyTorchJob", ("Failed", "True"), name="s-train-a1"), pods=[])
    assert not last.create and conditions(last)["Failed"] == ("True", "PyTorchJobFailed")
    assert "Failed says so" in last.status["message"] and "restarts exhausted" in last.status["message"]
    assert last.status["phase"] == "Failed" and last.status["completionTime"] == "2026-03-01T12:00:00Z"


@pytest.mark.parametrize(("code", "reason"), [(3, "LossNotFinite"), (2, "SpecRejected")])
def test_exit_codes_that_are_never_retried(code: int, reason: str) -> None:
    doc, _ = started(stage("s"))
    plan = run(doc, job=job("PyTorchJob", ("Failed", "True")), pods=[pod("s-train-a0", exit_code=code)])
    assert not plan.create and conditions(plan)["Failed"] == ("True", reason) and plan.status["restarts"] == 0


def test_success_reads_the_result_of_rank_0() -> None:
    doc, _ = started(stage("s", **{"spec.checkpoint.uri": "pvc://ckpt/s"}))
    result = json.dumps({"checkpoint": "/mnt/pvc/ckpt/s/final", "steps": 20, "tokens": 81920, "loss": 0.25})
    plan = run(doc, job=job("PyTorchJob", ("Succeeded", "True")), pods=[pod("s-train-a0", exit_code=0, message=result)])
    assert plan.status["checkpoint"]["final"] == "pvc://ckpt/s/final"
    assert plan.status["progress"] == {"step": 20, "tokens": 81920, "loss": 0.25, "percent": 100.0}
    assert plan.status["phase"] == "Succeeded"
    without = run(doc, job=job("PyTorchJob", ("Succeeded", "True")), pods=[])
    assert without.status["checkpoint"]["final"] == "pvc://ckpt/s/final"  # where the trainer exports it
    assert "TerminationMessageMissing" in [e.reason for e in without.events]


def test_suspend_and_resume() -> None:
    doc, _ = started(stage("s"))
    suspended = run(
        body(stage("s", **{"spec.suspend": True}), doc["status"]), job=job("PyTorchJob", ("Running", "True"))
    )
    assert suspended.delete == [("PyTorchJob", "s-train-a0")] and suspended.status["phase"] == "Suspended"
    again = run(body(stage("s", **{"spec.suspend": True}), suspended.status))
    assert again.delete == [] and again.events == []
    resumed = run(body(stage("s"), suspended.status))
    assert resumed.status["job"]["attempt"] == 1 and conditions(resumed)["Suspended"] == ("False", "Resumed")
    assert resumed.status["restarts"] == 0


def test_a_missing_job_is_recreated_under_the_same_name() -> None:
    doc, _ = started(stage("s"))
    plan = run(doc, job=None)
    assert plan.create[-1]["metadata"]["name"] == "s-train-a0"


def test_the_progress_deadline_restarts_a_stalled_gang() -> None:
    doc, _ = started(stage("s", **{"spec.progressDeadlineSeconds": 600}))
    running_job = job("PyTorchJob", ("Running", "True"))
    running = run(doc, job=running_job)
    assert running.status["phase"] == "Running" and running.status["startTime"] == "2026-03-01T12:00:00Z"
    doc = body(stage("s", **{"spec.progressDeadlineSeconds": 600}), running.status)
    assert not run(doc, job=running_job, now=NOW + timedelta(seconds=599)).create
    stalled = run(doc, job=running_job, now=NOW + timedelta(seconds=601))
    assert stalled.delete == [("PyTorchJob", "s-train-a0")] and stalled.status["job"]["attempt"] == 1
    (restart,) = stalled.events
    assert restart.reason == "Restarting" and "ProgressDeadlineExceeded" in restart.message


def test_a_new_retry_token_retries_only_a_failed_stage() -> None:
    doc, _ = started(stage("s", **{"spec.maxRestarts": 0, "metadata.annotations": {"sailvl.io/retry": "a"}}))
    failed = run(doc, job=job("PyTorchJob", ("Failed", "True")), pods=[])
    assert failed.status["phase"] == "Failed" and failed.status["retryToken"] == "a"
    same = run(
        body(stage("s", **{"spec.maxRestarts": 0, "metadata.annotations": {"sailvl.io/retry": "a"}}), failed.status)
    )
    assert not same.create
    new = run(
        body(stage("s", **{"spec.maxRestarts": 0, "metadata.annotations": {"sailvl.io/retry": "b"}}), failed.status)
    )
    assert new.status["job"]["name"] == "s-train-a1" and new.create[-1]["metadata"]["annotations"] == {
        "sailvl.io/retry": "b"
    }
    assert conditions(new)["Failed"] == ("False", "RetryRequested") and "completionTime" not in new.status


def test_an_invalid_spec_reports_once_and_creates_nothing() -> None:
    doc = body(stage("s", **{"spec.batch.globalSize": 3}))
    plan = run(doc)
    assert plan.result == "invalid" and plan.create == [] and conditions(plan)["Valid"] == ("False", "SpecInvalid")
    assert "spec.batch.globalSize" in plan.message and len(plan.events) == 1
    assert run(body(stage("s", **{"spec.batch.globalSize": 3}), plan.status)).events == []


def test_apply_progress_only_touches_a_running_stage() -> None:
    status = TrainStageStatus.model_validate(
        {
            "conditions": [
                {
                    "type": "Running",
                    "status": "True",
                    "reason": "JobRunning",
                    "message": "m",
                    "lastTransitionTime": "2026-03-01T11:00:00Z",
                }
            ],
            "job": {"kind": "PyTorchJob", "name": "s-train-a0", "attempt": 0},
        }
    )
    read = apply_progress(status, TrainSample(5, 10, 1.0), "", NOW, 1)
    assert read.progress is not None and read.progress.percent == 50.0
    stale = apply_progress(read, None, "connection refused", NOW, 1)
    assert stale.progress == read.progress
    running = next(c for c in stale.conditions if c.type == "Running")
    assert (running.status, running.reason) == (
        "True",
        "MetricsUnavailable",
    ) and "connection refused" in running.message
    idle = TrainStageStatus()
    assert apply_progress(idle, TrainSample(5, 10), "", NOW, 1) is idle
    assert TrainProgress.model_validate(read.progress.to_manifest()) == read.progress


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"p": {"x": 1, "y": 2}}, {"p": {"x": 1, "y": 3}}, {"p": {"y": 3}}),
        ({"l": [1, 2]}, {"l": [2]}, {"l": [2]}),
        ({}, {"n": {"m": 1}}, {"n": {"m": 1}}),
    ],
)
def test_merge_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(old, new) == patch
