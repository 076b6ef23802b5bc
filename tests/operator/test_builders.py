"""The pure builders over a table of stages and the paper's examples: every PyTorchJob and TrainJob validates
against the published CRD schemas (closed: no unknown fields), every pod template validates as a Pod with
kubernetes-validate --strict (1.35), and the table's cases show what each spec field turns into."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sailvl.api import TrainStage, load_documents, parse_resource
from sailvl_operator.builders import BuildContext, BuildError, build_pytorchjob, build_spec_configmap, build_trainjob
from sailvl_operator.builders.render import context_for
from sailvl_operator.settings import Settings
from tests.crdcheck import server_errors
from tests.manifests import TRAIN, mutated

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sail-vl-2b"
SCHEMA_FILES = {"PyTorchJob": "kubeflow.org_pytorchjobs.yaml", "TrainJob": "trainer.kubeflow.org_trainjobs.yaml"}
K8S = "1.35.0"
Check = Callable[[dict[str, Any], dict[str, Any]], None]  # (PyTorchJob, TrainJob or {})


def master(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]  # type: ignore[no-any-return]


def trainer(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] in ("pytorch", "node"))


def trainjob_pod(job: dict[str, Any]) -> dict[str, Any]:
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    return patch["template"]["spec"]["template"]  # type: ignore[no-any-return]


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def volumes(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_spec["volumes"]}


@dataclass
class Case:
    id: str
    changes: dict[str, Any]
    check: Check
    ctx: dict[str, Any] = field(default_factory=dict)
    trainjob_error: str | None = None  # the field a TrainJob cannot express


def _template(spec: dict[str, Any], metadata: dict[str, Any] | None = None, **runtime: Any) -> dict[str, Any]:
    return {"spec.runtime": {**runtime, "podTemplate": {"spec": spec, **({"metadata": metadata} if metadata else {})}}}


def check_cpu_single(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert pj["spec"]["nprocPerNode"] == "1" and "Worker" not in pj["spec"]["pytorchReplicaSpecs"]
    assert pj["spec"]["runPolicy"] == {"backoffLimit": 0, "cleanPodPolicy": "Running"}
    container = trainer(master(pj)["spec"])
    assert container["command"][0] == "torchrun" and container["command"][-4:] == [
        "-m",
        "sailvl.train",
        "--spec",
        "/etc/sailvl/spec.json",
    ]
    assert "resources" not in container or "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert mounts(container)["/dev/shm"]["name"] == "dshm" and mounts(container)["/etc/sailvl"]["readOnly"] is True
    assert tj["spec"]["trainer"]["numNodes"] == 1 and tj["spec"]["trainer"]["numProcPerNode"] == 1
    assert tj["spec"]["trainer"]["command"] == ["torchrun", "-m", "sailvl.train", "--spec", "/etc/sailvl/spec.json"]


def check_cpu_multi(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert pj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    assert pj["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert pj["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] == "Never"
    assert tj["spec"]["trainer"]["numNodes"] == 3


def check_gpus(nodes: int) -> Check:
    def check(pj: dict[str, Any], tj: dict[str, Any]) -> None:
        container = trainer(master(pj)["spec"])
        assert (
            container["resources"]["limits"]["nvidia.com/gpu"]
            == "8"
            == container["resources"]["requests"]["nvidia.com/gpu"]
        )
        assert pj["spec"]["nprocPerNode"] == "8"
        assert pj["spec"]["pytorchReplicaSpecs"].get("Worker", {}).get("replicas", 0) == nodes - 1
        assert tj["spec"]["trainer"]["numProcPerNode"] == 8
        assert tj["spec"]["trainer"]["resourcesPerNode"]["limits"] == {
            "cpu": "16",
            "memory": "200Gi",
            "nvidia.com/gpu": "8",
        }

    return check


def check_pvcs(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    for pod_spec in (master(pj)["spec"], trainjob_pod(tj)["spec"]):
        vols = volumes(pod_spec)
        assert vols["pvc-models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
        assert vols["pvc-data"]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
        assert vols["pvc-ckpt"]["persistentVolumeClaim"] == {"claimName": "ckpt"}
        at = mounts(trainer(pod_spec))
        assert at["/mnt/pvc/ckpt"].get("readOnly") is None and at["/mnt/pvc/models"]["readOnly"] is True


def check_s3(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert not [v for v in master(pj)["spec"]["volumes"] if "persistentVolumeClaim" in v]


def check_shared_claim(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    claims = [v for v in master(pj)["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        {"name": "pvc-shared", "persistentVolumeClaim": {"claimName": "shared"}}
    ]  # written: not read-only


def check_dotted_claim(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    names = [v["name"] for v in master(pj)["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert len(names) == 1 and names[0].startswith("pvc-team-a-ckpt-") and "." not in names[0]


def check_queue(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    for job in (pj, tj):
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-training"
    assert pj["spec"]["runPolicy"]["suspend"] is True and tj["spec"]["suspend"] is True


def check_deadline(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert pj["spec"]["runPolicy"]["activeDeadlineSeconds"] == 3600 == tj["spec"]["activeDeadlineSeconds"]


def check_placement(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    for pod_spec in (master(pj)["spec"], trainjob_pod(tj)["spec"]):
        assert pod_spec["nodeSelector"] == {"pool": "h100"}
        assert pod_spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert "nodeAffinity" in pod_spec["affinity"]


def check_env(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    values = env(trainer(master(pj)["spec"]))
    assert (
        values["NCCL_DEBUG"] == "WARN" and values["SAILVL_METRICS_PORT"] == "9500" and values["PYTHONUNBUFFERED"] == "1"
    )
    assert env(trainer(trainjob_pod(tj)["spec"]))["NCCL_DEBUG"] == "WARN"


def check_volumes(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    for pod_spec in (master(pj)["spec"], trainjob_pod(tj)["spec"]):
        vols = volumes(pod_spec)
        assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}  # merged by name
        assert vols["hf-token"]["secret"]["secretName"] == "hf"
        assert mounts(trainer(pod_spec))["/var/run/hf"]["name"] == "hf-token"
        assert len([v for v in pod_spec["volumes"] if v["name"] == "dshm"]) == 1


def check_security_override(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    for pod_spec in (master(pj)["spec"], trainjob_pod(tj)["spec"]):
        assert pod_spec["securityContext"]["runAsUser"] == 2000 and pod_spec["securityContext"]["runAsNonRoot"] is True
        assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def check_sidecar(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    sidecar = next(c for c in master(pj)["spec"]["containers"] if c["name"] == "log-shipper")
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["securityContext"]["allowPrivilegeEscalation"] is False


def check_pod_metadata(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    meta = master(pj)["metadata"]
    assert meta["labels"]["team"] == "vision" and meta["annotations"]["sidecar.istio.io/inject"] == "false"
    assert meta["labels"]["sailvl.io/name"] == "align"
    spec = master(pj)["spec"]
    assert (spec["serviceAccountName"], spec["priorityClassName"]) == ("trainer", "high")
    assert spec["imagePullSecrets"] == [{"name": "registry"}]


def check_image(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert (
        trainer(master(pj)["spec"])["image"] == "registry.example.com/sailvl:custom" == tj["spec"]["trainer"]["image"]
    )


def check_init_stage(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert mounts(trainer(master(pj)["spec"]))["/mnt/pvc/ckpt"]["name"] == "pvc-ckpt"


def check_curation(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert not [v for v in master(pj)["spec"]["volumes"] if "persistentVolumeClaim" in v]


def check_attempt(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    assert pj["metadata"]["name"] == "align-train-a3" == tj["metadata"]["name"]
    assert pj["metadata"]["labels"]["sailvl.io/attempt"] == "3"
    assert master(pj)["metadata"]["labels"]["sailvl.io/attempt"] == "3"
    assert pj["metadata"]["annotations"] == {"sailvl.io/retry": "7"}


def check_trainjob_resources(pj: dict[str, Any], tj: dict[str, Any]) -> None:
    limits = tj["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert limits["rdma/ib"] == "1" and limits["nvidia.com/gpu"] == "8"
    assert "resources" not in trainer(trainjob_pod(tj)["spec"])


GPU = {"spec.runtime": {"gpusPerNode": 8, "cpu": 16, "memory": "200Gi"}, "spec.batch.globalSize": 16}
CASES = [
    Case("cpu-single-node", {}, check_cpu_single),
    Case("cpu-three-nodes", {"spec.runtime": {"nodes": 3}, "spec.batch.globalSize": 6}, check_cpu_multi),
    Case("gpu-one-node", GPU, check_gpus(1)),
    Case(
        "gpu-four-nodes",
        {**GPU, "spec.runtime": {**GPU["spec.runtime"], "nodes": 4}, "spec.batch.globalSize": 64},
        check_gpus(4),
    ),
    Case(
        "pvc-init-data-checkpoint",
        {
            "spec.model": {"init": {"uri": "pvc://models/internvl-2b"}},
            "spec.data.mixture": [{"name": "caps", "source": {"uri": "pvc://data/caps/", "format": "parquet"}}],
            "spec.checkpoint.uri": "pvc://ckpt/align",
        },
        check_pvcs,
    ),
    Case(
        "s3-data-and-checkpoint",
        {
            "spec.data.mixture": [{"name": "caps", "source": {"uri": "s3://sailvl-data/caps/", "format": "jsonl"}}],
            "spec.checkpoint.uri": "s3://sailvl-ckpt/align",
        },
        check_s3,
    ),
    Case(
        "one-claim-read-and-written",
        {
            "spec.data.mixture": [{"name": "caps", "source": {"uri": "pvc://shared/data", "format": "parquet"}}],
            "spec.checkpoint.uri": "pvc://shared/ckpt/align",
        },
        check_shared_claim,
    ),
    Case("dotted-claim-name", {"spec.checkpoint.uri": "pvc://team-a.ckpt/align"}, check_dotted_claim),
    Case("kueue-queue", {"spec.runtime": {"queue": "gpu-training"}}, check_queue),
    Case("active-deadline", {"spec.runtime": {"activeDeadlineSeconds": 3600}}, check_deadline),
    Case(
        "placement",
        _template(
            {
                "nodeSelector": {"pool": "h100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                            ]
                        }
                    }
                },
            }
        ),
        check_placement,
    ),
    Case(
        "env-merged-by-name",
        _template(
            {
                "containers": [
                    {
                        "name": "pytorch",
                        "env": [
                            {"name": "NCCL_DEBUG", "value": "WARN"},
                            {"name": "SAILVL_METRICS_PORT", "value": "9500"},
                        ],
                    }
                ]
            }
        ),
        check_env,
    ),
    Case(
        "volumes-merged-by-name",
        _template(
            {
                "volumes": [
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
                    {"name": "hf-token", "secret": {"secretName": "hf"}},
                ],
                "containers": [
                    {
                        "name": "pytorch",
                        "volumeMounts": [{"name": "hf-token", "mountPath": "/var/run/hf", "readOnly": True}],
                    }
                ],
            }
        ),
        check_volumes,
    ),
    Case("security-override", _template({"securityContext": {"runAsUser": 2000}}), check_security_override),
    Case(
        "sidecar-is-restricted-too",
        _template({"containers": [{"name": "log-shipper", "image": "fluent-bit:3"}]}),
        check_sidecar,
        trainjob_error="spec.runtime.podTemplate.spec.containers[0].name",
    ),
    Case(
        "pod-metadata-and-identity",
        _template(
            {"serviceAccountName": "trainer", "priorityClassName": "high", "imagePullSecrets": [{"name": "registry"}]},
            {"labels": {"team": "vision"}, "annotations": {"sidecar.istio.io/inject": "false"}},
        ),
        check_pod_metadata,
        trainjob_error="spec.runtime.podTemplate.spec.priorityClassName",
    ),
    Case("custom-image", {"spec.runtime": {"image": "registry.example.com/sailvl:custom"}}, check_image),
    Case(
        "init-from-a-stage",
        {"spec.model": {"init": {"stage": "pretrain"}}},
        check_init_stage,
        ctx={"init_uri": "pvc://ckpt/pretrain/final"},
    ),
    Case(
        "data-from-a-curation-run",
        {"spec.data.mixture": [{"name": "recaptioned", "source": {"curationRun": "recaption"}}]},
        check_curation,
        ctx={"data_uris": {"recaption": "s3://sailvl-curated/recaption/"}},
    ),
    Case("attempt-three-after-a-retry", {}, check_attempt, ctx={"attempt": 3, "annotations": {"sailvl.io/retry": "7"}}),
    Case(
        "extra-device-resources",
        {
            "spec.batch.globalSize": 16,
            **_template(
                {
                    "containers": [
                        {"name": "pytorch", "resources": {"limits": {"rdma/ib": "1"}, "requests": {"rdma/ib": "1"}}}
                    ]
                },
                **GPU["spec.runtime"],
            ),
        },
        check_trainjob_resources,
    ),
]
assert len(CASES) >= 15


def stage_of(changes: dict[str, Any], **extra: Any) -> TrainStage:
    resource = parse_resource(mutated(TRAIN, {"metadata.namespace": "lab", **changes, **extra}))
    assert isinstance(resource, TrainStage)
    return resource


def context(case_ctx: dict[str, Any]) -> BuildContext:
    return BuildContext(settings=Settings(image="sailvl/sailvl:test", trainer_metrics_port=9400), **case_ctx)


def as_pod(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", **template.get("metadata", {})},
        "spec": template["spec"],
    }


def k8s_errors(obj: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc).splitlines()[0]]
    return []


@pytest.fixture(scope="module")
def crds(third_party_schemas: Path) -> dict[str, dict[str, Any]]:
    return {kind: yaml.safe_load((third_party_schemas / name).read_text()) for kind, name in SCHEMA_FILES.items()}


def assert_valid(job: dict[str, Any], crds: dict[str, dict[str, Any]]) -> None:
    assert server_errors(crds[job["kind"]], job) == []
    if job["kind"] == "PyTorchJob":
        templates = [r["template"] for r in job["spec"]["pytorchReplicaSpecs"].values()]
    else:
        templates = [trainjob_pod(job)]
    for template in templates:
        assert k8s_errors(as_pod(template)) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_case(case: Case, crds: dict[str, dict[str, Any]]) -> None:
    stage = stage_of(case.changes)
    ctx = context(case.ctx)
    pytorchjob = build_pytorchjob(stage, ctx)
    assert_valid(pytorchjob, crds)
    trainjob: dict[str, Any] = {}
    if case.trainjob_error is None:
        trainjob = build_trainjob(stage, ctx)
        assert_valid(trainjob, crds)
    else:
        with pytest.raises(BuildError) as raised:
            build_trainjob(stage, ctx)
        assert raised.value.field == case.trainjob_error
    configmap = build_spec_configmap(stage, ctx)
    assert k8s_errors(configmap) == []
    case.check(pytorchjob, trainjob)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_pod_runs_restricted_and_no_pvc_uri_reaches_the_trainer(case: Case) -> None:
    stage = stage_of(case.changes)
    ctx = context(case.ctx)
    job = build_pytorchjob(stage, ctx)
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        spec = replica["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    resolved = json.loads(build_spec_configmap(stage, ctx)["data"]["spec.json"])
    assert "pvc://" not in json.dumps(resolved)
    assert parse_resource(resolved).name == stage.name  # the trainer's spec is a valid TrainStage


def test_the_resolved_spec_names_local_paths_and_resolved_references() -> None:
    stage = stage_of(
        {
            "spec.model": {"init": {"stage": "pretrain"}},
            "spec.data.mixture": [
                {"name": "curated", "source": {"curationRun": "recaption", "imageField": "img"}},
                {"name": "local", "source": {"uri": "pvc://data/sft.jsonl", "format": "jsonl"}},
            ],
            "spec.checkpoint.uri": "pvc://ckpt/sft",
        }
    )
    ctx = BuildContext(init_uri="pvc://ckpt/pretrain/final", data_uris={"recaption": "s3://sailvl-curated/run-1/"})
    spec = json.loads(build_spec_configmap(stage, ctx)["data"]["spec.json"])["spec"]
    assert spec["model"]["init"] == {"uri": "/mnt/pvc/ckpt/pretrain/final"}
    assert spec["data"]["mixture"][0]["source"] == {
        "uri": "s3://sailvl-curated/run-1/",
        "format": "parquet",
        "imageField": "img",
    }
    assert spec["data"]["mixture"][1]["source"]["uri"] == "/mnt/pvc/data/sft.jsonl"
    assert spec["checkpoint"]["uri"] == "/mnt/pvc/ckpt/sft"


def test_an_unresolved_reference_is_a_build_error() -> None:
    with pytest.raises(BuildError, match="TrainStage/pretrain has no final checkpoint") as raised:
        build_pytorchjob(stage_of({"spec.model": {"init": {"stage": "pretrain"}}}), BuildContext())
    assert raised.value.field == "spec.model.init.stage"


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"spec": {"hostNetwork": True}}, "spec.runtime.podTemplate.spec.hostNetwork"),
        (
            {"spec": {"containers": [{"name": "pytorch", "envFrom": [{"secretRef": {"name": "s3"}}]}]}},
            "spec.runtime.podTemplate.spec.containers[0].envFrom",
        ),
        ({"metadata": {"name": "fixed"}}, "spec.runtime.podTemplate.metadata.name"),
        (
            {"spec": {"initContainers": [{"name": "warm", "image": "busybox"}]}},
            "spec.runtime.podTemplate.spec.initContainers[0].image",
        ),
    ],
)
def test_what_a_trainjob_cannot_express_is_named(template: dict[str, Any], field: str) -> None:
    stage = stage_of({"spec.runtime": {"kind": "TrainJob", "podTemplate": template}})
    with pytest.raises(BuildError) as raised:
        build_trainjob(stage, BuildContext())
    assert raised.value.field == field
    assert "TrainJob" in str(raised.value)
    build_pytorchjob(stage, BuildContext())  # the PyTorchJob carries it


def test_a_pod_template_with_other_top_level_keys_is_refused() -> None:
    with pytest.raises(BuildError) as raised:
        build_pytorchjob(stage_of({"spec.runtime": {"podTemplate": {"spec": {}, "template": {}}}}), BuildContext())
    assert raised.value.field == "spec.runtime.podTemplate.template"


EXAMPLE_STAGES = [d.resource for d in load_documents([EXAMPLES]) if isinstance(d.resource, TrainStage)]


@pytest.mark.parametrize("stage", EXAMPLE_STAGES, ids=[s.name for s in EXAMPLE_STAGES])
def test_examples_build_valid_jobs(stage: TrainStage, crds: dict[str, dict[str, Any]]) -> None:
    known = [d.resource for d in load_documents([EXAMPLES]) if d.resource is not None]
    ctx, _ = context_for(stage, known, Settings())
    assert_valid(build_pytorchjob(stage, ctx), crds)
    assert k8s_errors(build_spec_configmap(stage, ctx)) == []
    as_trainjob = stage.model_copy(deep=True)
    as_trainjob.spec.runtime.kind = "TrainJob"
    template = as_trainjob.spec.runtime.pod_template or {}
    if "priorityClassName" in template.get("spec", {}):
        with pytest.raises(BuildError, match="priorityClassName"):
            build_trainjob(as_trainjob, ctx)
    else:
        assert_valid(build_trainjob(as_trainjob, ctx), crds)


def test_the_example_stages_are_the_papers_six() -> None:
    assert [s.name for s in EXAMPLE_STAGES] == [
        "captioner",
        "pretrain-align",
        "pretrain-advance",
        "sft-knowledge",
        "sft-instruction",
        "sft-preference",
    ]


def test_builders_leave_the_stage_untouched() -> None:
    stage = stage_of(_template({"containers": [{"name": "pytorch", "env": [{"name": "A", "value": "1"}]}]}))
    before = copy.deepcopy(stage.to_manifest())
    build_pytorchjob(stage, BuildContext())
    build_trainjob(stage, BuildContext())
    assert stage.to_manifest() == before
