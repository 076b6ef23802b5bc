"""The pure builders of a CurationRun's children over a table of varied runs and the examples: every Deployment,
Service, Job and ConfigMap validates as Kubernetes 1.35 would take it (kubernetes-validate --strict plus the
server-side rules the schema does not carry), and each case shows what its spec fields turn into."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sailvl.api import CurationRun, EvalSuite, load_documents, parse_resource
from sailvl_operator.builders.curation import build_curation_children, build_curation_job, build_finalize_job
from sailvl_operator.builders.evaluation import build_eval_children
from sailvl_operator.builders.meta import BuildError
from sailvl_operator.builders.render import context_for
from sailvl_operator.builders.serving import Server, build_vllm_deployment, servers_of
from sailvl_operator.builders.train import BuildContext
from sailvl_operator.settings import Settings
from tests.manifests import CURATION, mutated
from tests.operator.validity import errors, services_select_servers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SETTINGS = Settings(image="sailvl/sailvl:test", vllm_image="vllm/vllm-openai:v0.11.0")
CONTEXT = BuildContext(
    settings=SETTINGS,
    model_uris={"captioner": "pvc://ckpt/captioner/final"},
    model_precisions={"captioner": "bf16"},
    data_uris={"raw-pass": "s3://sailvl-curated/raw-pass/"},
)
Objects = dict[str, dict[str, Any]]  # name -> child; a Service, which shares its Deployment's name, as service/<name>
Check = Callable[[Objects], None]


def run_of(changes: dict[str, Any]) -> CurationRun:
    run = parse_resource(mutated(CURATION, changes))
    assert isinstance(run, CurationRun)
    return run


def container(obj: dict[str, Any]) -> dict[str, Any]:
    template = obj["spec"]["template"]
    return template["spec"]["containers"][0]  # type: ignore[no-any-return]


def env(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(obj).get("env", [])}


def volumes(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in obj["spec"]["template"]["spec"].get("volumes", [])}


def resolved(objects: Objects, name: str = "recaption-spec") -> dict[str, Any]:
    return json.loads(objects[name]["data"]["spec.json"])  # type: ignore[no-any-return]


def served(name: str, model: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "model": model, **fields}


@dataclass
class Case:
    id: str
    changes: dict[str, Any]
    check: Check
    namespace: str | None = "lab"
    labels: dict[str, str] = field(default_factory=dict)


def check_stage_model_on_gpu(o: Objects) -> None:
    vllm = container(o["recaption-vllm-captioner"])
    assert vllm["command"][:5] == ["vllm", "serve", "/mnt/pvc/ckpt/captioner/final", "--served-model-name", "captioner"]
    # Served in the precision the stage exported it in, not vLLM's auto; no per-request tiling (no eval here).
    assert vllm["command"][vllm["command"].index("--dtype") + 1] == "bfloat16"
    assert "--trust-request-mm-kwargs" not in vllm["command"] and "--mm-processor-kwargs" not in vllm["command"]
    assert vllm["image"] == "vllm/vllm-openai:v0.11.0"
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "1" == vllm["resources"]["requests"]["nvidia.com/gpu"]
    assert volumes(o["recaption-vllm-captioner"])["pvc-ckpt"]["persistentVolumeClaim"]["readOnly"] is True
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in volumes(o["recaption-vllm-captioner"]).values()
    probes = {k: vllm[k]["httpGet"]["path"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/health", "readinessProbe": "/v1/models", "livenessProbe": "/health"}
    assert vllm["startupProbe"]["periodSeconds"] * vllm["startupProbe"]["failureThreshold"] == 600
    assert "initialDelaySeconds" not in vllm["startupProbe"]
    assert vllm["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    workers = o["recaption-workers"]
    assert workers["spec"]["completionMode"] == "Indexed" and workers["spec"]["completions"] == 1
    assert container(workers)["command"] == ["sailvl", "curate", "--spec", "/etc/sailvl/spec.json", "--workers", "1"]
    assert env(workers)["SAILVL_MODEL_URL_CAPTIONER"] == "http://recaption-vllm-captioner.lab.svc:8000/v1"
    assert env(workers)["SAILVL_TERMINATION_LOG"] == "/dev/termination-log"
    assert resolved(o)["spec"]["models"][0]["model"] == {"uri": "pvc://ckpt/captioner/final"}


def check_cpu_stand_in(o: Objects) -> None:
    serve = container(o["recaption-vllm-captioner"])
    assert serve["command"] == [
        "sailvl", "serve", "--model", "/mnt/pvc/models/tiny", "--served-model-name", "captioner",
        "--host", "0.0.0.0", "--port", "8000", "--max-model-len", "2048", "--dtype", "auto",
    ]  # fmt: skip
    assert serve["image"] == "sailvl/sailvl:test" and "nvidia.com/gpu" not in serve.get("resources", {}).get(
        "limits", {}
    )
    workers = o["recaption-workers"]
    assert workers["spec"]["parallelism"] == 4 == workers["spec"]["completions"]
    assert workers["spec"]["backoffLimitPerIndex"] == 2 and "backoffLimit" not in workers["spec"]


def check_s3_streamed(o: Objects) -> None:
    vllm = container(o["recaption-vllm-captioner"])["command"]
    assert vllm[2] == "s3://sailvl-models/captioner" and vllm[vllm.index("--load-format") + 1] == "runai_streamer"
    assert vllm[vllm.index("--tensor-parallel-size") + 1] == "2" and vllm[vllm.index("--data-parallel-size") + 1] == "2"
    assert container(o["recaption-vllm-captioner"])["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert not [v for v in volumes(o["recaption-vllm-captioner"]).values() if "persistentVolumeClaim" in v]


def check_two_models(o: Objects) -> None:
    judge = container(o["recaption-vllm-judge"])["command"]
    assert judge[2] == "gs://sailvl-models/judge" and "--load-format" not in judge  # the user chose one
    assert judge[-2:] == ["--load-format=safetensors", "--max-num-seqs=64"]
    assert judge[judge.index("--served-model-name") + 1] == "judge"
    assert o["recaption-vllm-judge"]["spec"]["replicas"] == 3
    hf = container(o["recaption-vllm-captioner"])["command"]
    assert hf[2] == "OpenGVLab/InternVL2-8B" and "--load-format" not in hf
    workers = env(o["recaption-workers"])
    assert workers["SAILVL_MODEL_URL_JUDGE"].startswith("http://recaption-vllm-judge.lab.svc:8000")


def check_pod_templates(o: Objects) -> None:
    pod = o["recaption-vllm-captioner"]["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"pool": "h100"} and pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["metadata"]["labels"]["sailvl.io/name"] == "recaption"  # the selector's label survives the override
    assert pod["metadata"]["annotations"] == {"team": "data"}
    assert env(o["recaption-vllm-captioner"])["HF_TOKEN"] == "" and "VLLM_NO_USAGE_STATS" in env(
        o["recaption-vllm-captioner"]
    )
    security = pod["spec"]["securityContext"]
    assert security["runAsUser"] == 2000 and security["seccompProfile"] == {"type": "RuntimeDefault"}
    workers = o["recaption-workers"]["spec"]["template"]["spec"]
    assert workers["serviceAccountName"] == "sailvl-data" and workers["priorityClassName"] == "batch-low"
    assert container(o["recaption-workers"])["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}


def check_queues(o: Objects) -> None:
    for name in ("recaption-vllm-captioner", "recaption-workers", "recaption-finalize"):
        labels = o[name]["metadata"]["labels"]
        assert labels["kueue.x-k8s.io/queue-name"] in ("gpu-serving", "cpu-batch"), name
        assert (
            o[name]["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]
            == labels["kueue.x-k8s.io/queue-name"]
        )
    assert o["recaption-workers"]["spec"]["suspend"] is True and "suspend" not in o["recaption-vllm-captioner"]["spec"]
    assert o["recaption-workers"]["spec"]["activeDeadlineSeconds"] == 7200


def check_input_from_a_run(o: Objects) -> None:
    source = resolved(o)["spec"]["input"]
    assert source == {"uri": "s3://sailvl-curated/raw-pass/", "format": "parquet", "imageField": "img"}
    assert resolved(o)["spec"]["output"]["uri"] == "/mnt/pvc/data/curated"
    assert volumes(o["recaption-finalize"])["pvc-data"]["persistentVolumeClaim"] == {"claimName": "data"}


def check_shared_claim(o: Objects) -> None:
    claims = [v for v in volumes(o["recaption-workers"]).values() if "persistentVolumeClaim" in v]
    assert claims == [
        {"name": "pvc-shared", "persistentVolumeClaim": {"claimName": "shared"}}
    ]  # written: not read-only
    spec = resolved(o)["spec"]
    assert (spec["input"]["uri"], spec["output"]["uri"]) == ("/mnt/pvc/shared/raw", "/mnt/pvc/shared/curated")


def check_longest_names(o: Objects) -> None:
    name = "a" * 40 + "-vllm-" + "c" * 17
    assert len(name) == 63 and o[name]["kind"] == "Deployment" and o[f"service/{name}"]["kind"] == "Service"
    assert env(o["a" * 40 + "-workers"])["SAILVL_MODEL_URL_" + "C" * 17].startswith(f"http://{name}.lab.svc")


def check_local_paths(o: Objects) -> None:
    assert container(o["recaption-vllm-captioner"])["command"][:4] == [
        "sailvl",
        "serve",
        "--model",
        "/models/captioner",
    ]
    assert container(o["recaption-vllm-judge"])["command"][2] == "models/judge"


def check_rules_only(o: Objects) -> None:
    assert [x["kind"] for x in o.values()] == ["ConfigMap", "Job", "Job"]  # nothing served
    assert not [k for k in env(o["recaption-workers"]) if k.startswith("SAILVL_MODEL_URL_")]


def check_failure_policy(o: Objects) -> None:
    for name, container_name in (("recaption-workers", "worker"), ("recaption-finalize", "finalize")):
        rules = o[name]["spec"]["podFailurePolicy"]["rules"]
        assert rules[0] == {
            "action": "FailJob",
            "onExitCodes": {"containerName": container_name, "operator": "In", "values": [2]},
        }
        assert rules[1]["action"] == "Ignore"
        assert o[name]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    final = o["recaption-finalize"]
    assert container(final)["command"] == ["sailvl", "curate", "--spec", "/etc/sailvl/spec.json", "--finalize"]
    assert final["spec"]["backoffLimit"] == 2 and "completionMode" not in final["spec"]
    assert "SAILVL_METRICS_PORT" not in env(final) and "ports" not in container(final)
    assert env(o["recaption-workers"])["SAILVL_METRICS_PORT"] == "9400"
    assert container(o["recaption-workers"])["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]


def check_no_namespace(o: Objects) -> None:
    assert env(o["recaption-workers"])["SAILVL_MODEL_URL_CAPTIONER"] == "http://recaption-vllm-captioner:8000/v1"
    assert all("namespace" not in x["metadata"] for x in o.values())


def check_owner_labels(o: Objects) -> None:
    for obj in o.values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "sail-vl-2b" and labels["sailvl.io/kind"] == "CurationRun"
    pod = o["recaption-workers"]["spec"]["template"]["metadata"]["labels"]
    assert pod["sailvl.io/component"] == "workers" and pod["app.kubernetes.io/managed-by"] == "sailvl-operator"


GPU = {"gpusPerReplica": 1}
CASES = [
    Case("stage-model-gpu", {}, check_stage_model_on_gpu),
    Case(
        "cpu-stand-in",
        {
            "spec.models": [served("captioner", {"uri": "pvc://models/tiny"}, gpusPerReplica=0, maxModelLen=2048)],
            "spec.workers": {"parallelism": 4, "concurrency": 2},
        },
        check_cpu_stand_in,
    ),
    Case(
        "s3-tensor-and-data-parallel",
        {
            "spec.models": [
                served("captioner", {"uri": "s3://sailvl-models/captioner"}, gpusPerReplica=4, tensorParallelSize=2)
            ]
        },
        check_s3_streamed,
    ),
    Case(
        "two-models-hf-and-gs",
        {
            "spec.models": [
                served("captioner", {"uri": "hf://OpenGVLab/InternVL2-8B"}, **GPU),
                served(
                    "judge",
                    {"uri": "gs://sailvl-models/judge"},
                    replicas=3,
                    extraArgs=["--load-format=safetensors", "--max-num-seqs=64"],
                    **GPU,
                ),
            ],
            "spec.steps[2]": {"judge": {"model": "judge", "minScore": 3.5}},
        },
        check_two_models,
    ),
    Case(
        "pod-templates",
        {
            "spec.models[0].podTemplate": {
                "metadata": {"labels": {"sailvl.io/name": "hijack"}, "annotations": {"team": "data"}},
                "spec": {
                    "nodeSelector": {"pool": "h100"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "securityContext": {"runAsUser": 2000},
                    "containers": [
                        {
                            "name": "vllm",
                            "env": [
                                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
                            ],
                        }
                    ],
                },
            },
            "spec.workers": {
                "parallelism": 8,
                "runtime": {
                    "cpu": 4,
                    "memory": "16Gi",
                    "podTemplate": {"spec": {"serviceAccountName": "sailvl-data", "priorityClassName": "batch-low"}},
                },
            },
        },
        check_pod_templates,
    ),
    Case(
        "kueue-queues-and-deadline",
        {
            "spec.models[0].queue": "gpu-serving",
            "spec.workers": {"runtime": {"queue": "cpu-batch", "activeDeadlineSeconds": 7200}},
        },
        check_queues,
    ),
    Case(
        "input-from-another-run",
        {"spec.input": {"curationRun": "raw-pass", "imageField": "img"}},
        check_input_from_a_run,
    ),
    Case(
        "input-and-output-on-one-claim",
        {"spec.input": {"uri": "pvc://shared/raw", "format": "jsonl"}, "spec.output.uri": "pvc://shared/curated"},
        check_shared_claim,
    ),
    Case(
        "longest-names",
        {
            "metadata.name": "a" * 40,
            "spec.models[0].name": "c" * 17,
            "spec.steps[0].recaption.model": "c" * 17,
        },
        check_longest_names,
    ),
    Case(
        "local-paths",
        {
            "spec.models": [
                served("captioner", {"uri": "file:///models/captioner"}, gpusPerReplica=0),
                served("judge", {"uri": "models/judge"}, **GPU),
            ]
        },
        check_local_paths,
    ),
    Case(
        "rules-only",
        {"spec.models": [], "spec.steps": [{"filter": {"minChars": 20}}, {"dedup": {"image": "exact"}}]},
        check_rules_only,
    ),
    Case("failure-policy", {"spec.workers": {"parallelism": 3}}, check_failure_policy),
    Case("no-namespace", {}, check_no_namespace, namespace=None),
    Case("owner-labels", {}, check_owner_labels, labels={"app.kubernetes.io/part-of": "sail-vl-2b"}),
]


def build(case: Case) -> Objects:
    changes = dict(case.changes)
    if case.namespace:
        changes["metadata.namespace"] = case.namespace
    if case.labels:
        changes["metadata.labels"] = case.labels
    children = build_curation_children(run_of(changes), CONTEXT)
    return {("service/" if o["kind"] == "Service" else "") + o["metadata"]["name"]: o for o in children}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_case(case: Case) -> None:
    objects = build(case)
    for obj in objects.values():
        assert errors(obj) == []
    assert services_select_servers(list(objects.values())) == []
    case.check(objects)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_pod_runs_restricted_and_the_workers_read_a_valid_resolved_spec(case: Case) -> None:
    objects = build(case)
    for obj in objects.values():
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    configmap = next(o for o in objects.values() if o["kind"] == "ConfigMap")
    document = json.loads(configmap["data"]["spec.json"])
    run = parse_resource(document)
    assert isinstance(run, CurationRun) and run.spec.input.uri is not None
    assert not run.spec.input.uri.startswith("pvc://") and not run.spec.output.uri.startswith("pvc://")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"spec.models[0]": served("captioner", {"uri": "s3://sailvl-models/c"}, gpusPerReplica=0)},
            "spec.models[0].model",
            "gpusPerReplica 0 serves with `sailvl serve`",
        ),
        (
            {
                "spec.models[0]": served(
                    "captioner", {"uri": "pvc://m/c"}, gpusPerReplica=0, extraArgs=["--enforce-eager"]
                )
            },
            "spec.models[0].extraArgs",
            "extraArgs are vLLM arguments",
        ),
        ({"spec.models[0].activeDeadlineSeconds": 60}, "spec.models[0].activeDeadlineSeconds", "workers only"),
        ({"spec.models[0].model": {"uri": "hf://org/repo/sub"}}, "spec.models[0].model", "a whole Hugging Face"),
        ({"spec.models[0].model": {"uri": "synthetic://shapes?n=4"}}, "spec.models[0].model", "not models"),
        ({"spec.models[0].podTemplate": {"template": {}}}, "spec.models[0].podTemplate.template", "only metadata"),
        (
            {"spec.workers": {"runtime": {"podTemplate": {"spec": []}}}},
            "spec.workers.runtime.podTemplate.spec",
            "a mapping",
        ),
    ],
)
def test_what_cannot_be_built_is_named(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(BuildError) as raised:
        build_curation_children(run_of(changes), CONTEXT)
    assert raised.value.field == field and message in str(raised.value)


def test_unresolved_references_are_build_errors() -> None:
    with pytest.raises(BuildError, match="TrainStage/captioner has no final checkpoint yet") as raised:
        build_curation_job(run_of({}), BuildContext())
    assert raised.value.field == "spec.models[0].model.stage"
    with pytest.raises(BuildError, match="CurationRun/upstream has no output yet") as raised:
        build_finalize_job(run_of({"spec.input": {"curationRun": "upstream"}}), CONTEXT)
    assert raised.value.field == "spec.input.curationRun"


def test_a_server_is_built_from_any_serving() -> None:
    run = run_of({})
    server = servers_of(run)[0]
    other = Server("judge", "qwen", server.model, server.runtime, "spec.judge", "spec.judge.model")
    deployment = build_vllm_deployment(other, run, CONTEXT)
    assert deployment["metadata"]["name"] == "recaption-vllm-judge"
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--served-model-name") + 1] == "qwen"


KNOWN = [d.resource for d in load_documents([EXAMPLES]) if d.resource is not None]
EXAMPLE_RESOURCES = [r for r in KNOWN if isinstance(r, CurationRun | EvalSuite)]


@pytest.mark.parametrize("resource", EXAMPLE_RESOURCES, ids=[f"{r.kind}/{r.name}" for r in EXAMPLE_RESOURCES])
def test_examples_build_valid_children(resource: CurationRun | EvalSuite) -> None:
    ctx, notes = context_for(resource, KNOWN, SETTINGS)
    assert notes == []  # every reference is in the examples
    children = (build_curation_children if isinstance(resource, CurationRun) else build_eval_children)(resource, ctx)  # type: ignore[arg-type]
    for obj in children:
        assert errors(obj) == []
    assert services_select_servers(children) == []
    kinds = [o["kind"] for o in children]
    assert kinds.count("Deployment") == kinds.count("Service") == len(servers_of(resource)) > 0


def test_the_examples_have_every_kind() -> None:
    assert {r.kind for r in EXAMPLE_RESOURCES} == {"CurationRun", "EvalSuite"} and len(EXAMPLE_RESOURCES) >= 8


@pytest.mark.parametrize(
    ("model", "dtype", "expected"),
    [
        ({"stage": "captioner"}, None, "bfloat16"),  # the stage's precision
        ({"stage": "captioner"}, "float32", "float32"),  # asked for
        ({"uri": "hf://Qwen/Qwen2.5-VL-7B-Instruct"}, None, "auto"),  # a checkpoint the operator cannot read
        ({"uri": "hf://Qwen/Qwen2.5-VL-7B-Instruct"}, "bfloat16", "bfloat16"),
    ],
)
def test_every_server_is_told_its_dtype(model: dict[str, Any], dtype: str | None, expected: str) -> None:
    serving = {"name": "captioner", "model": model, "gpusPerReplica": 1, **({"dtype": dtype} if dtype else {})}
    run = run_of({"spec.models": [serving]})
    (server,) = servers_of(run)
    command = container(build_vllm_deployment(server, run, CONTEXT))["command"]
    assert command[command.index("--dtype") + 1] == expected
