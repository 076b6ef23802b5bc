"""The CRDs: generated from the models, committed, structural, described, bounded, and accepted by Kubernetes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sailvl.api import KINDS
from sailvl.api.crd import crd_filename, crd_for, render_crds, stale_crds, structural_violations, write_crds
from tests.conftest import CRD_DIR
from tests.crdcheck import compile_rule, iter_rules, root_schema, server_errors
from tests.manifests import BASES, mutated


def test_committed_crds_equal_generated() -> None:
    rendered = render_crds()
    assert sorted(p.name for p in CRD_DIR.glob("sailvl.io_*.yaml")) == sorted(rendered)
    for name, text in rendered.items():
        assert (CRD_DIR / name).read_text() == text, f"{name} is stale: run `sailvl crds`"


def test_kubernetes_validate_accepts_each_crd_strictly() -> None:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    files = sorted(str(p) for p in CRD_DIR.glob("*.yaml"))  # ours and kopf's peering CRDs
    result = subprocess.run(
        [str(exe), "--strict", "--kubernetes-version", "1.35.0", *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    documents = sum(len(list(yaml.safe_load_all(Path(f).read_text()))) for f in files)
    assert result.stdout.count("passed") == documents, result.stdout


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    assert structural_violations(root_schema(crd_for(KINDS[kind]))) == []


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {}}}, ".a: type is missing"),
        ({"type": "array"}, "an array needs an items schema"),
        ({"type": "object", "properties": {"a": {"$ref": "#/x", "type": "string"}}}, "$ref is not allowed"),
        ({"type": "object", "anyOf": [{"type": "string"}]}, "anyOf may not set type"),
        ({"type": "object", "additionalProperties": False}, "additionalProperties must be a schema"),
    ],
)
def test_structural_check_catches_non_structural_schemas(schema: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in structural_violations(schema))


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return out
    for key, sub in node.get("properties", {}).items():
        out += _walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}.*")
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_is_described(kind: str) -> None:
    schema = root_schema(crd_for(KINDS[kind]))
    missing = [
        f"{path}.{key}"
        for path, node in _walk(schema)
        for key, sub in node.get("properties", {}).items()
        if not sub.get("description")
    ]
    assert missing == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_string_list_and_map_is_bounded(kind: str) -> None:
    """CEL cost estimation needs bounds; we bound everything outside free-form fragments and metadata."""
    schema = root_schema(crd_for(KINDS[kind]))
    unbounded = []
    for path, node in _walk(schema):
        if path == ".metadata" or node.get("x-kubernetes-int-or-string"):
            continue
        if (
            node.get("type") == "string"
            and "maxLength" not in node
            and "enum" not in node
            and path not in (".apiVersion", ".kind")
        ):
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            unbounded.append(path)
    assert unbounded == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_names_columns_and_status(kind: str) -> None:
    crd = crd_for(KINDS[kind])
    names = crd["spec"]["names"]
    assert names["categories"] == ["sailvl"]
    assert names["shortNames"] == [{"TrainStage": "ts", "CurationRun": "cur", "EvalSuite": "evs"}[kind]]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    key_figure = {"TrainStage": "Loss", "CurationRun": "Samples", "EvalSuite": "Average"}[kind]
    for required in ("Phase", "Progress", key_figure, "Age"):
        assert required in columns
    assert crd_filename(KINDS[kind]) == f"sailvl.io_{names['plural']}.yaml"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_cel_rule_compiles(kind: str) -> None:
    rules = iter_rules(root_schema(crd_for(KINDS[kind])))
    assert rules, "each kind carries CEL rules"
    for _, rule in rules:
        compile_rule(rule["rule"])
        assert rule["message"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_base_manifests_pass_the_server_checks(kind: str) -> None:
    assert server_errors(crd_for(KINDS[kind]), BASES[kind]) == []


@pytest.mark.parametrize(
    ("kind", "change", "immutable"),
    [
        ("TrainStage", {"spec.optimizer.lr": 2e-3}, "spec.optimizer is immutable"),
        ("TrainStage", {"spec.budget": {"steps": 40}}, "spec.budget is immutable"),
        ("TrainStage", {"spec.model.maxTiles": 12}, "spec.model is immutable"),
        ("TrainStage", {"spec.trainable": ["vision", "projector"]}, "spec.trainable is immutable"),
        ("TrainStage", {"spec.checkpoint.uri": "/elsewhere"}, "spec.checkpoint.uri is immutable"),
        ("TrainStage", {"spec.seed": 7}, "spec.seed is immutable"),
        ("CurationRun", {"spec.steps[1].filter.minChars": 20}, "spec.steps is immutable"),
        ("CurationRun", {"spec.output.uri": "pvc://data/other"}, "spec.output is immutable"),
        ("EvalSuite", {"spec.model": {"stage": "other"}}, "spec.model is immutable"),
    ],
)
def test_training_defining_fields_are_immutable(kind: str, change: dict[str, Any], immutable: str) -> None:
    crd = crd_for(KINDS[kind])
    errors = server_errors(crd, mutated(BASES[kind], change), old=BASES[kind])
    assert any(immutable in e for e in errors), errors


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("TrainStage", {"spec.runtime": {"nodes": 2}, "spec.batch.globalSize": 8}),
        ("TrainStage", {"spec.suspend": True}),
        ("TrainStage", {"spec.maxRestarts": 10}),
        ("TrainStage", {"spec.checkpoint.keep": 5}),
        ("TrainStage", {"spec.parallelism": {"engine": "fsdp"}}),
        ("CurationRun", {"spec.workers": {"parallelism": 64}}),
        ("CurationRun", {"spec.models[0].replicas": 4}),
        ("EvalSuite", {"spec.workers": {"concurrency": 32}}),
    ],
)
def test_operational_fields_stay_mutable(kind: str, change: dict[str, Any]) -> None:
    crd = crd_for(KINDS[kind])
    assert server_errors(crd, mutated(BASES[kind], change), old=BASES[kind]) == []


def test_defaults_reach_the_server_schema() -> None:
    spec = root_schema(crd_for(KINDS["TrainStage"]))["properties"]["spec"]["properties"]
    assert spec["parallelism"]["default"] == {}
    assert spec["parallelism"]["properties"]["engine"]["default"] == "ddp"
    assert spec["optimizer"]["properties"]["betas"]["default"] == [0.9, 0.999]
    assert spec["runtime"]["properties"]["kind"]["default"] == "PyTorchJob"
    status = root_schema(crd_for(KINDS["TrainStage"]))["properties"]["status"]
    assert "default" not in yaml.safe_dump(status)


def test_sailvl_crds_check_and_write(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    assert sorted(p.name for p in write_crds(out)) == sorted(render_crds())
    assert stale_crds(out) == []
    assert write_crds(out) == []  # unchanged files are left alone
    (out / crd_filename(KINDS["EvalSuite"])).write_text("stale")
    assert stale_crds(out) == [crd_filename(KINDS["EvalSuite"])]


def test_sailvl_crds_never_leaves_a_half_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "crds"
    shutil.copytree(CRD_DIR, out)
    before = {p.name: p.read_text() for p in out.iterdir()}
    for name in before:
        (out / name).write_text(before[name] + "# old\n")
    before = {p.name: p.read_text() for p in out.iterdir()}

    import os

    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr("sailvl.api.crd.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_crds(out)
    after = {p.name: p.read_text() for p in out.iterdir()}
    assert set(after) == set(before), "no temporary file is left behind"
    for name, text in after.items():
        assert text == before[name] or text == render_crds()[name], f"{name} is half written"
