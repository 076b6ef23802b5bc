"""A CurationRun's decisions without a cluster: each a pure function of what was observed (the run, its
dependencies, its Deployments, Jobs and pods) and the time."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from sailvl_operator.reconcile import Dependency
from sailvl_operator.runs import reconcile_run, worker_counts
from sailvl_operator.served import WorkloadObservation, WorkloadPlan
from sailvl_operator.settings import Settings
from tests.manifests import CURATION, mutated
from tests.operator.controllers import availability, job_status, server_pod, worker_message, worker_pod

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(image="sailvl/sailvl:test", models_ready_timeout=600)
CAPTIONER = Dependency(
    "TrainStage",
    "captioner",
    {"status": {"phase": "Succeeded", "checkpoint": {"final": "pvc://ckpt/captioner/final"}}},
)
TWO_WORKERS = {"spec.workers": {"parallelism": 2}}


def body(
    changes: dict[str, Any] | None = None, status: dict[str, Any] | None = None, generation: int = 1
) -> dict[str, Any]:
    doc = mutated(CURATION, changes or {})
    doc["metadata"].update(namespace="lab", generation=generation, uid="u-1", resourceVersion="7")
    if status is not None:
        doc["status"] = status
    return doc


def decide(
    run: dict[str, Any], *, now: datetime = NOW, deps: tuple[Dependency, ...] = (CAPTIONER,), **children: Any
) -> WorkloadPlan:
    return reconcile_run(WorkloadObservation(body=run, now=now, dependencies=deps, **children), SETTINGS)


def then(run: dict[str, Any], plan: WorkloadPlan) -> dict[str, Any]:
    """The run as it is after `plan`'s status was written."""
    return {**run, "status": copy.deepcopy(plan.status)}


def condition(plan: WorkloadPlan, type_: str) -> dict[str, Any]:
    return next((c for c in plan.status.get("conditions", []) if c["type"] == type_), {})


def created(plan: WorkloadPlan) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in plan.create]


def deployment(
    plan_or_obj: WorkloadPlan | dict[str, Any], name: str = "recaption-vllm-captioner", **status: Any
) -> dict[str, Any]:
    """A created Deployment as the API server stores it, with the controller's status (default: all available)."""
    obj = (
        plan_or_obj
        if isinstance(plan_or_obj, dict)
        else next(o for o in plan_or_obj.create if o["metadata"]["name"] == name)
    )
    stored = copy.deepcopy(obj)
    stored["metadata"]["generation"] = 1
    stored["status"] = availability(stored, **status)
    return stored


def job(plan: WorkloadPlan, name: str, *conditions: tuple[str, str, str], **counts: int) -> dict[str, Any]:
    obj = copy.deepcopy(next(o for o in plan.create if o["metadata"]["name"] == name))
    obj["status"] = job_status(*conditions, **counts)
    return obj


def worker(index: int, *, exit_code: int = 0, message: dict[str, Any] | str | None = None) -> dict[str, Any]:
    message = message if message is not None else worker_message(index, 3, 30, 20, judge=6)
    return worker_pod(
        "CurationRun", "recaption", "workers", "worker", exit_code=exit_code, message=message, index=index
    )


def started(changes: dict[str, Any] | None = None) -> tuple[dict[str, Any], WorkloadPlan, dict[str, Any]]:
    """A run whose models came up and whose workers Job was just created: (run, that plan, its Deployments and
    Services, as keyword arguments of `decide`)."""
    run = body(changes)
    first = decide(run)
    run = then(run, first)
    services = [o for o in first.create if o["kind"] == "Service"]
    deployments = [deployment(o) for o in first.create if o["kind"] == "Deployment"]
    plan = decide(run, deployments=deployments, services=services)
    return then(run, plan), plan, {"deployments": deployments, "services": services}


def test_a_run_waits_for_the_stage_its_captioner_is() -> None:
    waiting = Dependency("TrainStage", "captioner", {"status": {"phase": "Running"}})
    plan = decide(body(), deps=(waiting,))
    assert plan.create == [] and plan.result == "waiting"
    deps = condition(plan, "DependenciesReady")
    assert (deps["status"], deps["reason"]) == ("False", "WaitingForStage") and "captioner is Running" in deps[
        "message"
    ]
    assert plan.status["phase"] == "Waiting"
    missing = decide(body(), deps=(Dependency("TrainStage", "captioner", None),))
    assert "TrainStage/captioner does not exist yet" in condition(missing, "DependenciesReady")["message"]


def test_models_come_first_serving_the_stages_final_checkpoint() -> None:
    plan = decide(body())
    assert created(plan) == [("Deployment", "recaption-vllm-captioner"), ("Service", "recaption-vllm-captioner")]
    command = plan.create[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["vllm", "serve", "/mnt/pvc/ckpt/captioner/final"]
    models = condition(plan, "ModelsReady")
    assert (models["status"], models["reason"]) == ("False", "ModelsStarting")
    assert plan.status["phase"] == "Waiting" and [e.reason for e in plan.events] == ["ModelsStarting"]


def test_workers_start_only_when_every_replica_is_available() -> None:
    run = body({"spec.models[0].replicas": 2})
    first = decide(run)
    run = then(run, first)
    half = decide(run, deployments=[deployment(first, available=1)], services=[first.create[1]])
    assert half.create == [] and condition(half, "ModelsReady")["message"].startswith("captioner: 1 of 2 replicas")
    plan = decide(run, deployments=[deployment(first)], services=[first.create[1]])
    assert created(plan) == [("ConfigMap", "recaption-spec"), ("Job", "recaption-workers")]
    models = condition(plan, "ModelsReady")
    assert models["status"] == "True" and "http://recaption-vllm-captioner.lab.svc:8000/v1" in models["message"]
    env = {e["name"]: e["value"] for e in plan.create[1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAILVL_MODEL_URL_CAPTIONER"] == "http://recaption-vllm-captioner.lab.svc:8000/v1"
    assert condition(plan, "Running")["reason"] == "JobCreated" and plan.status["phase"] == "Pending"


def test_a_crash_looping_model_surfaces_its_reason_then_fails_past_the_timeout() -> None:
    run = then(body(), first := decide(body()))
    crashing = [server_pod("CurationRun", "recaption", "captioner", reason="CrashLoopBackOff", message="back-off 40s")]
    seen = {"deployments": [deployment(first, available=0)], "services": [first.create[1]], "pods": crashing}
    plan = decide(run, now=NOW + timedelta(seconds=60), **seen)
    models = condition(plan, "ModelsReady")
    assert (models["status"], models["reason"]) == ("False", "CrashLoopBackOff")
    assert "container vllm: CrashLoopBackOff: back-off 40s (last exit code 1: CUDA out of memory" in models["message"]
    assert plan.result == "waiting" and plan.create == [] and plan.scale == []
    assert [e.reason for e in plan.events] == ["CrashLoopBackOff"]
    late = decide(then(run, plan), now=NOW + timedelta(seconds=601), **seen)
    failed = condition(late, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "ModelsNotReady")
    assert "not ready within 600s" in failed["message"] and "CrashLoopBackOff" in failed["message"]
    assert late.scale == [("recaption-vllm-captioner", 0)] and late.status["phase"] == "Failed"
    assert late.status["completionTime"] == "2026-03-01T12:10:01Z"


def test_an_unschedulable_model_says_why() -> None:
    run = then(body(), first := decide(body()))
    pod = server_pod("CurationRun", "recaption", "captioner", reason="ContainerCreating")
    pod["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    plan = decide(run, deployments=[deployment(first, available=0)], services=[first.create[1]], pods=[pod])
    models = condition(plan, "ModelsReady")
    assert models["reason"] == "Unschedulable" and "Insufficient nvidia.com/gpu" in models["message"]


def test_progress_counts_only_the_workers_that_reported() -> None:
    run, plan, servers = started(TWO_WORKERS)
    workers = job(plan, "recaption-workers", active=1, succeeded=1)
    workers["status"]["startTime"] = "2026-03-01T11:58:30Z"  # the Job controller's: when its first pod started
    seen = {**servers, "jobs": [workers]}
    running = decide(run, pods=[worker(0)], **seen)
    assert condition(running, "Running")["status"] == "True"
    assert condition(running, "Running")["message"] == "Job recaption-workers: 1 of 2 workers done, 1 running"
    progress = running.status["progress"]
    assert progress == {
        "shardsDone": 3,
        "samplesIn": 30,
        "samplesOut": 20,
        "dropped": {"judge": 6},
        "rejected": {"bad_image": 4},
    }  # no shardsTotal or percent: worker 1 has not said how many shards it had
    assert running.status["startTime"] == "2026-03-01T11:58:30Z" and running.status["phase"] == "Running"
    quiet = decide(then(run, running), pods=[], **seen)  # pods gone: what was seen stays
    assert quiet.status["progress"] == progress


def test_finalize_starts_after_the_workers_and_the_models_scale_to_zero() -> None:
    run, plan, servers = started(TWO_WORKERS)
    active = decide(run, jobs=[job(plan, "recaption-workers", active=2)], **servers)
    run = then(run, active)
    workers = job(plan, "recaption-workers", ("Complete", "CompletionsReached", ""), succeeded=2)
    seen = {**servers, "jobs": [workers], "pods": [worker(0), worker(1)]}
    done = decide(run, **seen)
    assert created(done) == [("ConfigMap", "recaption-spec"), ("Job", "recaption-finalize")]
    assert done.scale == [("recaption-vllm-captioner", 0)]
    assert condition(done, "ModelsReady")["reason"] == "ModelsStopped"
    assert done.status["progress"]["shardsTotal"] == 6 and done.status["progress"]["percent"] == 100.0
    assert done.status["phase"] == "Running"  # still, between the workers and finalize
    kept = decide(body({**TWO_WORKERS, "spec.keepModels": True}, run["status"]), **seen)
    assert kept.scale == [] and created(kept)[-1] == ("Job", "recaption-finalize")


def test_finalize_counts_land_in_status_and_the_run_succeeds() -> None:
    run, plan, servers = started(TWO_WORKERS)
    workers = job(plan, "recaption-workers", ("Complete", "CompletionsReached", ""), succeeded=2)
    seen = {**servers, "pods": [worker(0), worker(1)]}
    final_plan = decide(run, jobs=[workers], **seen)
    run = then(run, final_plan)
    final = job(final_plan, "recaption-finalize", ("Complete", "CompletionsReached", ""), succeeded=1)
    message = {
        "shards": 1,
        "samples": 31,
        "in": 60,
        "kept": 31,
        "dropped": {"judge": 12, "dedup": 9},
        "rejected": {"bad_image": 8},
    }
    finalize = worker_pod("CurationRun", "recaption", "finalize", "finalize", exit_code=0, message=message)
    stopped = [deployment(d, available=0) for d in servers["deployments"]]
    for d in stopped:
        d["spec"]["replicas"] = 0
    plan = decide(
        run, jobs=[workers, final], deployments=stopped, services=servers["services"], pods=[*seen["pods"], finalize]
    )
    status = plan.status
    assert status["phase"] == "Succeeded" and condition(plan, "Succeeded")["status"] == "True"
    assert status["output"] == {"uri": "pvc://data/curated", "shards": 1, "samples": 31}
    assert status["progress"] == {
        "shardsDone": 6,
        "shardsTotal": 6,
        "percent": 100.0,
        "samplesIn": 60,
        "samplesOut": 31,
        "dropped": {"dedup": 9, "judge": 12},
        "rejected": {"bad_image": 8},
    }
    assert plan.scale == [] and status["completionTime"] and "Completed" in [e.reason for e in plan.events]


def test_a_finalize_without_counts_sets_no_counts() -> None:
    run, plan, servers = started()
    workers = job(plan, "recaption-workers", ("Complete", "CompletionsReached", ""), succeeded=1)
    final_plan = decide(run, jobs=[workers], **servers, pods=[worker(0)])
    final = job(final_plan, "recaption-finalize", ("Complete", "CompletionsReached", ""), succeeded=1)
    silent = worker_pod("CurationRun", "recaption", "finalize", "finalize", exit_code=0, message="")
    done = decide(then(run, final_plan), jobs=[workers, final], **servers, pods=[worker(0), silent])
    assert done.status["phase"] == "Succeeded" and done.status["output"] == {"uri": "pvc://data/curated"}
    assert "samplesOut" in done.status["progress"]  # from the worker, which did report
    assert [e.reason for e in done.events if e.type == "Warning"] == ["TerminationMessageMissing"]


def test_an_invalid_spec_from_a_worker_fails_without_retries() -> None:
    run, plan, servers = started()
    failed_job = job(
        plan,
        "recaption-workers",
        ("Failed", "PodFailurePolicy", "Container worker for pod lab/x failed with exit code 2"),
    )
    pod = worker(0, exit_code=2, message={"worker": 0, "error": "spec.input: no shards at /mnt/pvc/raw"})
    out = decide(run, jobs=[failed_job], **servers, pods=[pod])
    failed = condition(out, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "SpecRejected")
    assert "exit code 2" in failed["message"] and "no shards at /mnt/pvc/raw" in failed["message"]
    assert out.scale == [("recaption-vllm-captioner", 0)] and out.create == []
    crashed = worker(0, exit_code=1, message="Traceback ...\nConnectionError: server gone")
    other = decide(
        run,
        jobs=[
            job(
                plan,
                "recaption-workers",
                ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            )
        ],
        **servers,
        pods=[crashed],
    )
    assert condition(other, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "ConnectionError: server gone" in condition(other, "Failed")["message"]


def test_suspend_deletes_the_running_job_and_scales_the_models_to_zero_then_resume_waits_for_them() -> None:
    run, plan, servers = started()
    workers = job(plan, "recaption-workers", active=1)
    suspended_run = body({"spec.suspend": True}, run["status"], generation=2)
    paused = decide(suspended_run, jobs=[workers], **servers, pods=[])
    assert paused.delete == [("Job", "recaption-workers")] and paused.scale == [("recaption-vllm-captioner", 0)]
    assert paused.status["phase"] == "Suspended" and condition(paused, "Suspended")["reason"] == "SuspendedByUser"
    scaled = [deployment(d, available=0) for d in servers["deployments"]]
    for d in scaled:
        d["spec"]["replicas"] = 0
        d["metadata"]["generation"] = d["status"]["observedGeneration"] = 2
    later = NOW + timedelta(hours=2)
    resumed = decide(body({}, paused.status, generation=3), now=later, deployments=scaled, services=servers["services"])
    assert resumed.scale == [("recaption-vllm-captioner", 1)] and resumed.create == []
    assert condition(resumed, "Suspended")["reason"] == "Resumed" and resumed.status["phase"] == "Waiting"
    assert resumed.result == "waiting"  # two hours suspended do not count against the models' timeout
    back = [deployment(d) for d in servers["deployments"]]
    again = decide(then(body({}, generation=3), resumed), now=later, deployments=back, services=servers["services"])
    assert ("Job", "recaption-workers") in created(again)


def test_a_deleted_job_that_lingers_is_waited_for() -> None:
    run, plan, servers = started()
    lingering = job(plan, "recaption-workers")
    lingering["metadata"]["deletionTimestamp"] = "2026-03-01T11:59:00Z"
    out = decide(run, jobs=[lingering], **servers)
    assert out.create == [] and condition(out, "Running")["reason"] == "WaitingForDeletion"


def test_a_model_location_the_server_cannot_load_is_invalid() -> None:
    cpu_from_s3 = {"spec.models[0]": {"name": "captioner", "model": {"uri": "s3://models/cap"}, "gpusPerReplica": 0}}
    plan = decide(body(cpu_from_s3), deps=())
    valid = condition(plan, "Valid")
    assert (valid["status"], valid["reason"], plan.result) == ("False", "SpecInvalid", "invalid")
    assert "spec.models[0].model: gpusPerReplica 0 serves with `sailvl serve`" in valid["message"]
    assert plan.create == [] and plan.status["phase"] == "Failed"


def test_a_finished_run_keeps_its_models_down() -> None:
    run, _, servers = started()
    done = body(
        {},
        {
            **run["status"],
            "phase": "Succeeded",
            "conditions": [
                *run["status"]["conditions"],
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "Completed",
                    "message": "",
                    "lastTransitionTime": "2026-03-01T12:00:00Z",
                },
            ],
        },
    )
    out = decide(done, **servers)
    assert out.scale == [("recaption-vllm-captioner", 0)] and out.create == [] and out.delete == []
    kept = decide(body({"spec.keepModels": True}, done["status"]), **servers)
    assert kept.scale == []


def test_worker_counts_take_well_formed_messages_only() -> None:
    good = worker_message(1, 2, 10, 7, filter=3)
    found = worker_counts(
        [good, {"worker": 0, "shards": "3"}, {"error": "boom"}, worker_message(5, 1, 1, 1)], workers=2
    )
    assert list(found) == [1] and found[1].records_in == 10 and found[1].rejected == {"bad_image": 0}


def test_a_run_of_rules_only_starts_its_workers_at_once() -> None:
    rules = {"spec.models": [], "spec.steps": [{"filter": {"minChars": 5}}, {"dedup": {"text": "minhash"}}]}
    plan = decide(body(rules), deps=())
    assert created(plan) == [("ConfigMap", "recaption-spec"), ("Job", "recaption-workers")]
    assert condition(plan, "ModelsReady") == {} and plan.scale == []
