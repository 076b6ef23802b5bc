"""The pure builders of an EvalSuite's children over a table of suites: the model under test served as `model`,
an optional judge under its own name, one eval Job; all valid as Kubernetes 1.35 would take them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sailvl.api import EvalSuite, parse_resource
from sailvl_operator.builders.evaluation import build_eval_children, build_eval_job
from sailvl_operator.builders.meta import BuildError
from sailvl_operator.builders.train import BuildContext
from sailvl_operator.settings import Settings
from tests.manifests import EVAL, mutated
from tests.operator.validity import errors, services_select_servers

CONTEXT = BuildContext(
    settings=Settings(image="sailvl/sailvl:test"),
    model_uris={"align": "pvc://ckpt/align/final", "judge-sft": "s3://sailvl-ckpt/judge/final"},
    model_precisions={"align": "fp32", "judge-sft": "bf16"},
)
JUDGE = {"name": "grader", "model": {"uri": "pvc://models/qwen2.5-72b"}, "gpusPerReplica": 4, "tensorParallelSize": 4}


def suite_of(changes: dict[str, Any]) -> EvalSuite:
    suite = parse_resource(mutated(EVAL, {"metadata.namespace": "lab", **changes}))
    assert isinstance(suite, EvalSuite)
    return suite


def by_name(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {("service/" if o["kind"] == "Service" else "") + o["metadata"]["name"]: o for o in children}


def command(obj: dict[str, Any]) -> list[str]:
    return obj["spec"]["template"]["spec"]["containers"][0]["command"]  # type: ignore[no-any-return]


def env(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


CASES: dict[str, dict[str, Any]] = {
    "defaults-gpu": {},
    "cpu": {"spec.serving": {"gpusPerReplica": 0}, "spec.maxTiles": 1},
    "judge": {"spec.judge": JUDGE},
    "judge-from-a-stage": {"spec.judge": {**JUDGE, "model": {"stage": "judge-sft"}}},
    "judge-named-model": {"spec.judge": {**JUDGE, "name": "model"}},
    "benchmark-files-and-output-on-claims": {
        "spec.benchmarks": ["MMBench_DEV_EN", "OCRBench", "POPE"],
        "spec.data.uri": "pvc://eval-data/vlmevalkit",
        "spec.output": {"uri": "pvc://eval-data/results/align"},
    },
    "placement": {
        "spec.serving": {
            "replicas": 4,
            "queue": "gpu-eval",
            "cpu": 8,
            "memory": "64Gi",
            "extraArgs": ["--enforce-eager"],
        },
        "spec.workers": {
            "concurrency": 32,
            "runtime": {"cpu": 2, "podTemplate": {"spec": {"nodeSelector": {"pool": "cpu"}}}},
        },
    },
}


@pytest.mark.parametrize("changes", CASES.values(), ids=CASES.keys())
def test_every_child_is_valid(changes: dict[str, Any]) -> None:
    children = build_eval_children(suite_of(changes), CONTEXT)
    for obj in children:
        assert errors(obj) == []
    assert services_select_servers(children) == []
    document = json.loads(children[0]["data"]["spec.json"])
    suite = parse_resource(document)
    assert isinstance(suite, EvalSuite) and suite.spec.model.uri == "pvc://ckpt/align/final"


def test_the_model_under_test_is_served_as_model_and_found_at_its_variable() -> None:
    o = by_name(build_eval_children(suite_of({}), CONTEXT))
    assert list(o) == ["align-eval-spec", "align-eval-vllm-model", "service/align-eval-vllm-model", "align-eval-eval"]
    served = command(o["align-eval-vllm-model"])
    assert served[:5] == ["vllm", "serve", "/mnt/pvc/ckpt/align/final", "--served-model-name", "model"]
    assert served[served.index("--dtype") + 1] == "float32"  # as the fp32 stage stored it, not vLLM's bfloat16
    job = o["align-eval-eval"]
    assert command(job) == ["sailvl", "eval", "--spec", "/etc/sailvl/spec.json"]
    assert env(job)["SAILVL_MODEL_URL_MODEL"] == "http://align-eval-vllm-model.lab.svc:8000/v1"
    assert "SAILVL_MODEL_URL_JUDGE" not in env(job) and env(job)["SAILVL_TERMINATION_LOG"] == "/dev/termination-log"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["containerName"] == "eval"
    pod = job["spec"]["template"]["metadata"]["labels"]
    assert (pod["sailvl.io/kind"], pod["sailvl.io/name"], pod["sailvl.io/component"]) == (
        "EvalSuite",
        "align-eval",
        "eval",
    )


def test_a_judge_is_served_under_its_own_name_beside_the_model() -> None:
    o = by_name(build_eval_children(suite_of({"spec.judge": {**JUDGE, "name": "model"}}), CONTEXT))
    judge = command(o["align-eval-vllm-judge"])
    assert judge[2] == "/mnt/pvc/models/qwen2.5-72b" and judge[judge.index("--served-model-name") + 1] == "model"
    assert judge[judge.index("--tensor-parallel-size") + 1] == "4" and "--data-parallel-size" not in judge
    assert env(o["align-eval-eval"])["SAILVL_MODEL_URL_JUDGE"] == "http://align-eval-vllm-judge.lab.svc:8000/v1"
    selector = o["service/align-eval-vllm-judge"]["spec"]["selector"]
    assert selector["sailvl.io/model"] == "judge"  # not the model under test's pods, whatever the judge is called


def test_the_model_is_ready_for_the_most_tiles_any_benchmark_asks_and_takes_each_requests_own() -> None:
    changes = {"spec.maxTiles": 6, "spec.overrides": {"shapes_count": {"maxTiles": 12}}}
    o = by_name(build_eval_children(suite_of({**changes, "spec.judge": JUDGE}), CONTEXT))
    served = command(o["align-eval-vllm-model"])
    assert json.loads(served[served.index("--mm-processor-kwargs") + 1]) == {"max_patches": 12}
    assert "--trust-request-mm-kwargs" in served
    judge = command(o["align-eval-vllm-judge"])
    assert "--mm-processor-kwargs" not in judge and judge[judge.index("--dtype") + 1] == "auto"
    cpu = by_name(build_eval_children(suite_of({**changes, "spec.serving": {"gpusPerReplica": 0}}), CONTEXT))
    stand_in = command(cpu["align-eval-vllm-model"])
    assert stand_in[:2] == ["sailvl", "serve"] and stand_in[stand_in.index("--max-tiles") + 1] == "12"


def test_benchmark_files_are_read_only_and_the_output_writable() -> None:
    changes = CASES["benchmark-files-and-output-on-claims"]
    o = by_name(build_eval_children(suite_of(changes), CONTEXT))
    spec = json.loads(o["align-eval-spec"]["data"]["spec.json"])["spec"]
    assert (spec["data"]["uri"], spec["output"]["uri"]) == (
        "/mnt/pvc/eval-data/vlmevalkit",
        "/mnt/pvc/eval-data/results/align",
    )
    volumes = o["align-eval-eval"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "pvc-eval-data", "persistentVolumeClaim": {"claimName": "eval-data"}} in volumes


def test_placement_reaches_the_right_pods() -> None:
    o = by_name(build_eval_children(suite_of(CASES["placement"]), CONTEXT))
    server = o["align-eval-vllm-model"]
    assert server["spec"]["replicas"] == 4 and server["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-eval"
    assert command(server)[-1] == "--enforce-eager"
    job = o["align-eval-eval"]["spec"]
    assert job["template"]["spec"]["nodeSelector"] == {"pool": "cpu"} and "suspend" not in job


def test_an_unresolved_model_is_a_build_error() -> None:
    with pytest.raises(BuildError, match="TrainStage/align has no final checkpoint yet") as raised:
        build_eval_job(suite_of({}), BuildContext())
    assert raised.value.field == "spec.model.stage"
