"""The operator against the Kubernetes emulator over HTTP, kopf in its own thread: each scenario asserts the
objects the emulator holds, as `kubectl get` would show them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from tests.operator.conftest import Kube, OperatorThread, eventually, free_port, settle
from tests.operator.kubeflow import fail, mark_running, pod, set_conditions, stage, succeed

pytestmark = pytest.mark.k8s
StartOperator = Callable[..., Awaitable[OperatorThread]]


def phase(kube: Kube, name: str) -> str | None:
    return ((kube.get("TrainStage", name) or {}).get("status") or {}).get("phase")


def status(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.get("TrainStage", name) or {}).get("status") or {}


def spec_json(kube: Kube, name: str) -> dict[str, Any]:
    configmap = kube.get("ConfigMap", f"{name}-spec")
    assert configmap is not None
    return json.loads(configmap["data"]["spec.json"])  # type: ignore[no-any-return]


async def test_a_chain_runs_one_stage_after_another(kube: Kube, operator: OperatorThread) -> None:
    for doc in (stage("first"), stage("second", after="first"), stage("third", after="second")):
        await kube.create(doc)
    await eventually(lambda: phase(kube, "third") == "Waiting", what="third waits")
    assert kube.names("PyTorchJob") == ["first-train-a0"]
    waiting = kube.condition("second", "DependenciesReady")
    assert (waiting["status"], waiting["reason"]) == ("False", "WaitingForStage")
    assert "TrainStage/first" in waiting["message"]

    job = kube.get("PyTorchJob", "first-train-a0")
    assert job is not None
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "TrainStage",
        "first",
        kube.get("TrainStage", "first")["metadata"]["uid"],
    )  # type: ignore[index]

    await mark_running(kube, "first-train-a0")
    await eventually(lambda: phase(kube, "first") == "Running", what="first running")
    await succeed(kube, "first-train-a0", checkpoint="/mnt/pvc/ckpt/first/final", steps=20, loss=0.42)

    await eventually(lambda: kube.get("PyTorchJob", "second-train-a0"), what="the second job")
    done = status(kube, "first")
    assert done["phase"] == "Succeeded"
    assert done["checkpoint"]["final"] == "pvc://ckpt/first/final"  # the pod's path, as the URI others mount
    assert (done["progress"]["step"], done["progress"]["loss"], done["progress"]["percent"]) == (20, 0.42, 100.0)
    assert done["completionTime"]
    assert spec_json(kube, "second")["spec"]["model"]["init"] == {"uri": "/mnt/pvc/ckpt/first/final"}
    assert status(kube, "second")["resolved"]["init"] == "pvc://ckpt/first/final"
    second = kube.get("PyTorchJob", "second-train-a0")
    assert second is not None
    volumes = second["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]
    assert {"name": "pvc-ckpt", "persistentVolumeClaim": {"claimName": "ckpt"}} in volumes
    assert kube.names("PyTorchJob") == ["first-train-a0", "second-train-a0"]
    assert phase(kube, "third") == "Waiting"


async def test_b_failed_gang_restarts_then_fails_with_the_jobs_message(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("flaky", **{"spec.maxRestarts": 2}))
    for attempt in range(3):
        job = f"flaky-train-a{attempt}"
        await eventually(lambda job=job: kube.get("PyTorchJob", job), what=job)
        await mark_running(kube, job)
        await fail(kube, job, message=f"pod flaky-worker-0 OOMKilled in attempt {attempt}")
        if attempt < 2:
            await eventually(lambda a=attempt: status(kube, "flaky").get("restarts") == a + 1, what="a restart")

    await eventually(lambda: phase(kube, "flaky") == "Failed", what="flaky failed")
    failed = kube.condition("flaky", "Failed")
    assert failed["reason"] == "PyTorchJobFailed"
    assert "OOMKilled in attempt 2" in failed["message"] and "restarts exhausted" in failed["message"]
    assert status(kube, "flaky")["restarts"] == 2
    assert (
        operator.metrics.registry.get_sample_value("sailvl_job_restarts_total", {"namespace": "lab", "name": "flaky"})
        == 2
    )
    assert status(kube, "flaky")["job"] == {"kind": "PyTorchJob", "name": "flaky-train-a2", "attempt": 2}
    restarts = await eventually(
        lambda: [e for e in kube.events("flaky") if e["reason"] == "Restarting"][1:] and kube.events("flaky"),
        what="two Restarting Events",
    )
    restarts = [e for e in restarts if e["reason"] == "Restarting"]
    assert len(restarts) == 2 and "as attempt 1" in restarts[0]["message"]
    await settle(1.0)
    assert kube.names("PyTorchJob") == ["flaky-train-a0", "flaky-train-a1", "flaky-train-a2"]


async def test_b_a_non_finite_loss_is_not_restarted(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("diverged"))
    await eventually(lambda: kube.get("PyTorchJob", "diverged-train-a0"), what="the job")
    await fail(kube, "diverged-train-a0", exit_code=3, message="rank 0 exited with code 3")
    await eventually(lambda: phase(kube, "diverged") == "Failed", what="failed")
    assert kube.condition("diverged", "Failed")["reason"] == "LossNotFinite"
    await settle(1.0)
    assert kube.names("PyTorchJob") == ["diverged-train-a0"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"spec.optimizer.lr": -1.0}, "spec.optimizer.lr"),
        (
            {"spec.runtime": {"kind": "TrainJob", "podTemplate": {"spec": {"priorityClassName": "high"}}}},
            "podTemplate.spec.priorityClassName",
        ),
    ],
)
async def test_c_invalid_spec_creates_nothing(
    kube: Kube, operator: OperatorThread, changes: dict[str, Any], field: str
) -> None:
    await kube.create(stage("broken", **changes))
    await eventually(lambda: kube.condition("broken", "Valid").get("status") == "False", what="Valid=False")
    valid = kube.condition("broken", "Valid")
    assert valid["reason"] == "SpecInvalid" and field in valid["message"]
    assert phase(kube, "broken") == "Failed"
    await eventually(lambda: [e for e in kube.events("broken") if e["reason"] == "SpecInvalid"], what="an Event")
    await settle(1.0)
    assert kube.all("PyTorchJob") == [] and kube.all("TrainJob") == [] and kube.all("ConfigMap") == []
    assert len([e for e in kube.events("broken") if e["reason"] == "SpecInvalid"]) == 1  # no retry loop


async def test_d_a_restarted_operator_continues_the_chain_without_duplicates(
    kube: Kube, operator_factory: StartOperator
) -> None:
    operator = await operator_factory()
    await kube.create(stage("one"))
    await kube.create(stage("two", after="one"))
    await eventually(lambda: kube.get("PyTorchJob", "one-train-a0"), what="the first job")
    await mark_running(kube, "one-train-a0")
    await eventually(lambda: phase(kube, "one") == "Running", what="running")

    await operator.stop()
    await succeed(kube, "one-train-a0", checkpoint="/mnt/pvc/ckpt/one/final")  # while no operator runs
    await operator.start()

    await eventually(lambda: kube.get("PyTorchJob", "two-train-a0"), what="the second job")
    await settle(1.5)
    assert kube.names("PyTorchJob") == ["one-train-a0", "two-train-a0"]
    assert status(kube, "one")["restarts"] == 0 and phase(kube, "one") == "Succeeded"
    jobs_created = [e for e in kube.events("one") if e["reason"] == "JobCreated"]
    assert len(jobs_created) == 1


async def test_e_suspend_deletes_the_job_and_resume_starts_a_new_attempt(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("pausable"))
    await eventually(lambda: kube.get("PyTorchJob", "pausable-train-a0"), what="the job")
    await mark_running(kube, "pausable-train-a0")
    await eventually(lambda: phase(kube, "pausable") == "Running", what="running")

    await kube.patch("TrainStage", "pausable", {"spec": {"suspend": True}})
    await eventually(lambda: phase(kube, "pausable") == "Suspended", what="suspended")
    await eventually(lambda: kube.get("PyTorchJob", "pausable-train-a0") is None, what="the job deleted")
    assert kube.condition("pausable", "Suspended")["reason"] == "SuspendedByUser"
    assert kube.all("ConfigMap")  # the spec, like the checkpoints, stays

    await kube.patch("TrainStage", "pausable", {"spec": {"suspend": False}})
    await eventually(lambda: kube.get("PyTorchJob", "pausable-train-a1"), what="attempt 1")
    resumed = kube.condition("pausable", "Suspended")
    assert (resumed["status"], resumed["reason"]) == ("False", "Resumed")
    assert status(kube, "pausable")["restarts"] == 0  # a resume is not a failure
    assert phase(kube, "pausable") == "Pending"


async def test_f_a_failed_dependency_fails_its_dependents(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("base", **{"spec.maxRestarts": 0}))
    await kube.create(stage("middle", after="base"))
    await kube.create(stage("top", after="middle"))
    await eventually(lambda: kube.get("PyTorchJob", "base-train-a0"), what="the base job")
    await fail(kube, "base-train-a0", message="NCCL timeout")

    for name in ("middle", "top"):
        await eventually(
            lambda name=name: kube.condition(name, "DependenciesReady").get("reason") == "DependencyFailed", what=name
        )
        assert kube.condition(name, "Failed")["reason"] == "DependencyFailed"
        assert phase(kube, name) == "Failed"
    assert "NCCL timeout" in kube.condition("middle", "DependenciesReady")["message"]
    await settle(1.5)
    assert kube.names("PyTorchJob") == ["base-train-a0"]
    assert kube.names("ConfigMap") == ["base-spec"]


async def test_g_progress_is_read_from_rank_0(kube: Kube, operator_factory: StartOperator) -> None:
    registry = CollectorRegistry()
    step = Gauge("sailvl_train_step", "steps", registry=registry)
    Gauge("sailvl_train_total_steps", "total", registry=registry).set(20)
    loss = Gauge("sailvl_train_loss", "loss", registry=registry)
    Counter("sailvl_train_tokens", "tokens", registry=registry).inc(5000)
    Gauge("sailvl_train_tokens_per_second", "tps", registry=registry).set(250.0)
    step.set(5)
    loss.set(1.25)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        operator = await operator_factory(trainer_metrics_port=port)
        await kube.create(stage("watched"))
        await eventually(lambda: kube.get("PyTorchJob", "watched-train-a0"), what="the job")
        await kube.create(pod("watched-train-a0"))
        await mark_running(kube, "watched-train-a0")
        await eventually(lambda: (status(kube, "watched").get("progress") or {}).get("step") == 5, what="step 5")
        progress = status(kube, "watched")["progress"]
        assert progress["totalSteps"] == 20 and progress["percent"] == 25.0
        assert progress["loss"] == 1.25 and progress["tokens"] == 5000 and progress["tokensPerSecond"] == 250.0
        step.set(10)
        loss.set(0.75)
        await eventually(lambda: status(kube, "watched")["progress"]["step"] == 10, what="step 10")
        assert status(kube, "watched")["progress"]["eta"]  # from the step rate between the two reads
        assert status(kube, "watched")["progress"]["loss"] == 0.75
        labels = {"namespace": "lab", "name": "watched"}
        gauges = operator.metrics.registry
        assert await eventually(lambda: gauges.get_sample_value("sailvl_stage_progress_ratio", labels) == 0.5)
        assert gauges.get_sample_value("sailvl_stage_loss", labels) == 0.75
        # The stalled-stage alert's clock: the time the step last advanced, as status records it.
        advanced = datetime.fromisoformat(status(kube, "watched")["progress"]["lastAdvanceTime"].replace("Z", "+00:00"))
        stamp = "sailvl_stage_last_progress_timestamp_seconds"
        assert await eventually(lambda: gauges.get_sample_value(stamp, labels) == advanced.timestamp())
        assert gauges.get_sample_value("sailvl_job_restarts_total", labels) == 0.0  # from 0, not absent
    finally:
        server.shutdown()
    await eventually(lambda: kube.condition("watched", "Running").get("reason") == "MetricsUnavailable", what="stale")
    assert kube.condition("watched", "Running")["status"] == "True"
    assert status(kube, "watched")["progress"]["step"] == 10  # kept, not reset


async def test_h_operator_metrics_count_reconciles(kube: Kube, operator_factory: StartOperator) -> None:
    port = free_port()
    await operator_factory(metrics_port=port)
    await kube.create(stage("counted"))
    await kube.create(stage("later", after="counted"))
    await eventually(lambda: kube.get("PyTorchJob", "counted-train-a0"), what="the job")
    await eventually(lambda: phase(kube, "later") == "Waiting", what="waiting")

    async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as rsp:
            text = await rsp.text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def counts(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[float, float]:
        ok = samples.get(("sailvl_operator_reconcile_total", (("kind", "TrainStage"), ("result", "ok"))), 0)
        waiting = samples.get(("sailvl_operator_reconcile_total", (("kind", "TrainStage"), ("result", "waiting"))), 0)
        return ok, waiting

    async def both_counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        # A reconcile is counted when its handler returns, just after its effects became visible.
        samples = await scrape()
        return samples if min(counts(samples)) >= 1 else None

    samples = await eventually(both_counted, what="an ok and a waiting reconcile in /metrics")
    ok, waiting = counts(samples)
    assert samples[("sailvl_operator_reconcile_duration_seconds_count", (("kind", "TrainStage"),))] >= ok + waiting

    async def phases_counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = await scrape()
        waiting = samples.get(("sailvl_resources", (("kind", "TrainStage"), ("phase", "Waiting"))))
        pending = samples.get(("sailvl_resources", (("kind", "TrainStage"), ("phase", "Pending"))))
        return samples if (waiting, pending) == (1, 1) else None

    samples = await eventually(phases_counted, what="one Waiting and one Pending stage in sailvl_resources")
    assert samples[("sailvl_operator_watch_last_event_timestamp_seconds", (("kind", "TrainStage"),))] > 0


async def test_a_job_waiting_for_kueue_is_pending_queued(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("queued", **{"spec.runtime": {"queue": "gpu-training"}}))
    job = await eventually(lambda: kube.get("PyTorchJob", "queued-train-a0"), what="the job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-training"
    assert job["spec"]["runPolicy"]["suspend"] is True
    await set_conditions(
        kube,
        "PyTorchJob",
        "queued-train-a0",
        ("Created", "PyTorchJobCreated", ""),
        ("Suspended", "PyTorchJobSuspended", "suspended"),
    )
    await eventually(lambda: kube.condition("queued", "Running").get("reason") == "Queued", what="Queued")
    assert phase(kube, "queued") == "Pending"
    assert kube.condition("queued", "Suspended") == {}  # Kueue's suspension is not the user's
    await mark_running(kube, "queued-train-a0")  # admitted
    await eventually(lambda: phase(kube, "queued") == "Running", what="running")


async def test_a_trainjob_stage_runs_and_hands_on_its_checkpoint(kube: Kube, operator: OperatorThread) -> None:
    runtime = {"kind": "TrainJob", "nodes": 2, "podTemplate": {"spec": {"nodeSelector": {"pool": "gpu"}}}}
    await kube.create(stage("v2", **{"spec.runtime": runtime, "spec.batch.globalSize": 8}))
    await kube.create(stage("v2-next", after="v2"))
    job = await eventually(lambda: kube.get("TrainJob", "v2-train-a0"), what="the TrainJob")
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed" and job["spec"]["trainer"]["numNodes"] == 2
    await succeed(kube, "v2-train-a0", kind="TrainJob", checkpoint="/mnt/pvc/ckpt/v2/final")
    await eventually(lambda: kube.get("PyTorchJob", "v2-next-train-a0"), what="the next stage's job")
    assert status(kube, "v2")["checkpoint"]["final"] == "pvc://ckpt/v2/final"


async def test_a_stalled_gang_is_restarted_after_the_progress_deadline(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("stalled", **{"spec.progressDeadlineSeconds": 1}))
    await eventually(lambda: kube.get("PyTorchJob", "stalled-train-a0"), what="the job")
    await mark_running(kube, "stalled-train-a0")  # running, but rank 0 never reports a step
    await eventually(lambda: kube.get("PyTorchJob", "stalled-train-a1"), timeout=15, what="attempt 1")
    assert kube.get("PyTorchJob", "stalled-train-a0") is None  # the hung gang was stopped
    assert status(kube, "stalled")["restarts"] == 1
    restarts = await eventually(
        lambda: [e for e in kube.events("stalled") if e["reason"] == "Restarting"], what="the Restarting Event"
    )
    assert "ProgressDeadlineExceeded" in restarts[0]["message"]


async def test_a_new_retry_token_retries_a_failed_stage(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("again", **{"spec.maxRestarts": 0, "metadata.annotations": {"sailvl.io/retry": "0"}}))
    await eventually(lambda: kube.get("PyTorchJob", "again-train-a0"), what="the job")
    await fail(kube, "again-train-a0")
    await eventually(lambda: phase(kube, "again") == "Failed", what="failed")
    assert kube.names("PyTorchJob") == ["again-train-a0"]  # the token it was created with retries nothing

    await kube.patch("TrainStage", "again", {"metadata": {"annotations": {"sailvl.io/retry": "1"}}})
    job = await eventually(lambda: kube.get("PyTorchJob", "again-train-a1"), what="attempt 1")
    assert job["metadata"]["annotations"]["sailvl.io/retry"] == "1"
    retried = kube.condition("again", "Failed")
    assert (retried["status"], retried["reason"]) == ("False", "RetryRequested")
    assert phase(kube, "again") == "Pending"


async def test_a_deleted_stage_goes_and_its_children_name_it_as_owner(kube: Kube, operator: OperatorThread) -> None:
    await kube.create(stage("doomed"))
    job = await eventually(lambda: kube.get("PyTorchJob", "doomed-train-a0"), what="the job")
    uid = kube.get("TrainStage", "doomed")["metadata"]["uid"]  # type: ignore[index]
    await kube.delete("TrainStage", "doomed")
    await eventually(lambda: kube.get("TrainStage", "doomed") is None, what="the stage gone")  # kopf let it go
    configmap = kube.get("ConfigMap", "doomed-spec")
    for child in (job, configmap):
        assert child is not None
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (uid, True, True)  # the GC's cue


async def test_the_operator_runs_as_a_process_with_liveness_and_metrics(kube: Kube, kubeconfig: Any) -> None:
    health, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "SAILVL_PEERING": "none",
        "SAILVL_OPERATOR_HEALTH_PORT": str(health),
        "SAILVL_OPERATOR_METRICS_PORT": str(metrics),
        "SAILVL_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "sailvl_operator", env=env)
    try:
        async with aiohttp.ClientSession() as session:

            async def get(port: int, path: str) -> str:
                try:
                    async with session.get(f"http://127.0.0.1:{port}{path}") as rsp:
                        return await rsp.text() if rsp.status == 200 else ""
                except aiohttp.ClientError:
                    return ""

            await eventually(lambda: get(health, "/healthz"), timeout=20, what="/healthz")
            await kube.create(stage("subprocess"))
            await eventually(lambda: kube.get("PyTorchJob", "subprocess-train-a0"), what="the job")
            text = await eventually(lambda: get(metrics, "/metrics"), what="/metrics")
            assert 'sailvl_operator_reconcile_total{kind="TrainStage",result="ok"}' in text
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_a_bad_setting_stops_the_operator_with_its_name() -> None:
    env = {**os.environ, "SAILVL_TIMER_INTERVAL": "often"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sailvl_operator", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert "SAILVL_TIMER_INTERVAL must be a number of seconds; found 'often'" in err.decode()
