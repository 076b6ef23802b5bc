"""Settings from the environment, the permission table, `sailvl render`, and what the builders import."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sailvl.cli import main
from sailvl_operator.k8s import PERMISSIONS
from sailvl_operator.settings import Settings, SettingsError, environment_table
from tests.manifests import TRAIN, mutated

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sail-vl-2b"


def test_settings_defaults_and_overrides() -> None:
    default = Settings.from_env({})
    assert default.clusterwide and default.metrics_port == 8080 and default.trainer_metrics_port == 9400
    assert default.image.startswith("sailvl/sailvl:") and default.peering == "sailvl"
    custom = Settings.from_env(
        {
            "SAILVL_WATCH_NAMESPACES": " research, prod ,",
            "SAILVL_TIMER_INTERVAL": "2.5",
            "SAILVL_PEERING": "none",
            "SAILVL_LOG_LEVEL": "debug",
            "SAILVL_IMAGE": "registry.example.com/sailvl:1.2",
            "SAILVL_TRAINJOB_RUNTIME_KIND": "TrainingRuntime",
        }
    )
    assert custom.namespaces == ("research", "prod") and not custom.clusterwide
    assert (custom.timer_interval, custom.peering, custom.log_level) == (2.5, "", "DEBUG")
    assert custom.image == "registry.example.com/sailvl:1.2" and custom.trainjob_runtime_kind == "TrainingRuntime"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SAILVL_TIMER_INTERVAL", "soon", "SAILVL_TIMER_INTERVAL must be a number of seconds; found 'soon'"),
        ("SAILVL_PROGRESS_INTERVAL", "0", "SAILVL_PROGRESS_INTERVAL must be greater than 0"),
        ("SAILVL_OPERATOR_METRICS_PORT", "70000", "SAILVL_OPERATOR_METRICS_PORT must be a port number"),
        ("SAILVL_PEERING_PRIORITY", "high", "SAILVL_PEERING_PRIORITY must be an integer; found 'high'"),
        ("SAILVL_LOG_LEVEL", "LOUD", "SAILVL_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ("SAILVL_TRAINJOB_RUNTIME_KIND", "Runtime", "must be ClusterTrainingRuntime or TrainingRuntime"),
    ],
)
def test_a_bad_setting_names_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env({variable: value})


def test_every_setting_has_a_documented_variable() -> None:
    rows = environment_table()
    assert len(rows) == len(dataclasses.fields(Settings))
    assert all(name.startswith("SAILVL_") and meaning for name, _, meaning in rows)
    assert len({name for name, _, _ in rows}) == len(rows)


def test_the_permission_table_is_well_formed() -> None:
    keys = [(p.api_group, p.resource) for p in PERMISSIONS]
    assert len(keys) == len(set(keys))
    for permission in PERMISSIONS:
        assert permission.verbs and set(permission.verbs) <= {
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
        }
        assert permission.why and permission.scope in ("namespace", "cluster")
    kopf_needs = {
        ("kopf.dev", "clusterkopfpeerings"),
        ("kopf.dev", "kopfpeerings"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "events"),
    }
    assert kopf_needs <= set(keys)


def test_render_prints_every_child_of_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLES)]) == 0
    out, err = capsys.readouterr()
    docs = list(yaml.safe_load_all(out))
    stage, served = ["ConfigMap", "PyTorchJob"], ["Deployment", "Service"]
    curation = ["ConfigMap", *served * 2, "Job", "Job"]
    assert [d["kind"] for d in docs] == stage + curation + stage * 5 + ["ConfigMap", *served * 2, "Job"]
    assert "skipped" not in err
    captioner = next(d for d in docs if d["metadata"]["name"] == "sail-caption-vllm-captioner")
    command = captioner["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["vllm", "serve", "/mnt/pvc/checkpoints/sail-vl-2b/captioner/final"]
    advance = next(d for d in docs if d["metadata"]["name"] == "pretrain-advance-spec")
    spec = yaml.safe_load(advance["data"]["spec.json"])["spec"]
    assert spec["model"]["init"]["uri"] == "/mnt/pvc/checkpoints/sail-vl-2b/pretrain-align/final"
    assert spec["data"]["mixture"][0]["source"]["uri"] == "s3://sailvl-curated/sail-caption/"


def test_render_shows_a_reference_outside_the_files_as_a_placeholder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLES / "06-sft-instruction.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "TrainStage/sft-knowledge is not in the files" in err
    configmap = next(yaml.safe_load_all(out))
    assert "<final checkpoint of TrainStage/sft-knowledge>" in configmap["data"]["spec.json"]


def test_render_refuses_invalid_files_and_unbuildable_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutated(TRAIN, {"spec.optimizer.lr": -1.0})))
    assert main(["render", str(bad)]) == 1
    assert "spec.optimizer.lr" in capsys.readouterr().err
    trainjob = tmp_path / "trainjob.yaml"
    runtime = {"kind": "TrainJob", "podTemplate": {"spec": {"hostNetwork": True}}}
    trainjob.write_text(yaml.safe_dump(mutated(TRAIN, {"spec.runtime": runtime})))
    assert main(["render", str(trainjob)]) == 1
    assert (
        "TrainStage/align: spec.runtime.podTemplate.spec.hostNetwork: a TrainJob cannot set hostNetwork"
        in capsys.readouterr().err
    )


def test_builders_and_render_do_not_import_kopf_or_kubernetes() -> None:
    code = "import sys, sailvl_operator.builders.render; print([m for m in ('kopf', 'kubernetes', 'aiohttp') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_reconcile_outcome_is_counted_from_zero() -> None:
    from typing import get_args

    from sailvl_operator.metrics import RESULTS, OperatorMetrics
    from sailvl_operator.reconcile import Result

    assert set(RESULTS) == {*get_args(Result), "error", "gone"}
    registry = OperatorMetrics().registry
    for kind in ("TrainStage", "CurationRun", "EvalSuite"):
        for result in RESULTS:
            assert registry.get_sample_value("sailvl_operator_reconcile_total", {"kind": kind, "result": result}) == 0
        assert registry.get_sample_value("sailvl_operator_watch_lag_seconds", {"kind": kind}) == 0
