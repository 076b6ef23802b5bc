"""A table of broken manifests: each mistake is refused by the models with the right field path, and by
the CRD (schema, list types and CEL rules) as the API server would refuse it."""

from __future__ import annotations

from typing import Any

import pytest

from sailvl.api import KINDS, ManifestError, parse_resource
from sailvl.api.crd import crd_for
from tests.crdcheck import server_errors
from tests.manifests import BASES, DELETE, mutated

T, C, E = "TrainStage", "CurationRun", "EvalSuite"
LONG = "a" * 41

# (case id, kind, changes, expected field path, fragment of the expected message)
CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("name-uppercase", T, {"metadata.name": "Align"}, "metadata.name", "DNS-1035"),
    ("name-too-long", T, {"metadata.name": LONG}, "metadata.name", "at most 40 characters; found 41"),
    ("unknown-spec-field", T, {"spec.epochz": 3}, "spec.epochz", "unknown field 'epochz'"),
    (
        "unknown-nested-field",
        T,
        {"spec.optimizer.learningRate": 1e-3},
        "spec.optimizer.learningRate",
        "expected one of: lr",
    ),
    ("lr-wrong-type", T, {"spec.optimizer.lr": "fast"}, "spec.optimizer.lr", "valid number; found 'fast'"),
    ("lr-quoted-number", T, {"spec.optimizer.lr": "1e-4"}, "spec.optimizer.lr", "valid number; found '1e-4'"),
    ("lr-not-positive", T, {"spec.optimizer.lr": 0}, "spec.optimizer.lr", "greater than 0; found 0"),
    ("warmup-ratio-one", T, {"spec.optimizer.warmupRatio": 1.0}, "spec.optimizer.warmupRatio", "less than 1"),
    ("min-lr-above-lr", T, {"spec.optimizer.minLr": 0.01}, "spec.optimizer.minLr", "at most lr (0.001); found 0.01"),
    ("beta-out-of-range", T, {"spec.optimizer.betas": [0.9, 1.0]}, "spec.optimizer.betas[1]", "[0, 1); found 1.0"),
    ("betas-three", T, {"spec.optimizer.betas": [0.9, 0.95, 0.99]}, "spec.optimizer.betas", "at most 2 items"),
    (
        "global-not-multiple-of-micro",
        T,
        {"spec.batch.globalSize": 7},
        "spec.batch.globalSize",
        "multiple of microSize (2); found 7",
    ),
    (
        "global-not-multiple-of-world",
        T,
        {"spec.runtime": {"nodes": 2, "gpusPerNode": 8}},
        "spec.batch.globalSize",
        "2 x 16 = 32",
    ),
    ("micro-zero", T, {"spec.batch.microSize": 0}, "spec.batch.microSize", "greater than or equal to 1"),
    ("budget-two", T, {"spec.budget": {"steps": 10, "tokens": 1000}}, "spec.budget", "found 2: tokens, steps"),
    ("budget-none", T, {"spec.budget": {}}, "spec.budget", "found none"),
    ("model-init-and-preset", T, {"spec.model.init": {"stage": "prev"}}, "spec.model", "exactly one of init, preset"),
    ("model-neither", T, {"spec.model": {"maxTiles": 4}}, "spec.model", "found none"),
    (
        "model-ref-both",
        T,
        {"spec.model": {"init": {"stage": "prev", "uri": "s3://bucket/ckpt"}}},
        "spec.model.init",
        "exactly one of stage, uri",
    ),
    (
        "bad-reference-name",
        T,
        {"spec.model": {"init": {"stage": "Prev_Stage"}}},
        "spec.model.init.stage",
        "found 'Prev_Stage'",
    ),
    (
        "components-with-init",
        T,
        {"spec.model": {"init": {"uri": "/ckpt"}, "vision": {"uri": "/vit"}}},
        "spec.model.vision",
        "preset only",
    ),
    ("trainable-empty", T, {"spec.trainable": []}, "spec.trainable", "at least 1 item"),
    ("trainable-unknown", T, {"spec.trainable": ["head"]}, "spec.trainable[0]", "'vision', 'projector' or 'language'"),
    ("trainable-repeated", T, {"spec.trainable": ["projector", "projector"]}, "spec.trainable[1]", "listed twice"),
    ("max-tiles-too-many", T, {"spec.model.maxTiles": 65}, "spec.model.maxTiles", "less than or equal to 64; found 65"),
    (
        "tile-size-with-init",
        T,
        {"spec.model": {"init": {"uri": "/ckpt"}, "tileSize": 448}},
        "spec.model.tileSize",
        "preset only",
    ),
    ("eval-max-tiles", E, {"spec.maxTiles": 0}, "spec.maxTiles", "greater than or equal to 1"),
    ("tile-size-not-28", T, {"spec.model.tileSize": 450}, "spec.model.tileSize", "multiple of 28"),
    (
        "uri-unknown-scheme",
        T,
        {"spec.checkpoint.uri": "http://host/ckpt"},
        "spec.checkpoint.uri",
        "unknown URI scheme 'http://'",
    ),
    (
        "pvc-bad-claim",
        T,
        {"spec.checkpoint.uri": "pvc://Bad_Claim/ckpt"},
        "spec.checkpoint.uri",
        "PersistentVolumeClaim name",
    ),
    (
        "pvc-escapes-claim",
        T,
        {"spec.checkpoint.uri": "pvc://data/../etc"},
        "spec.checkpoint.uri",
        "'..' is not allowed",
    ),
    (
        "uri-needs-format",
        T,
        {"spec.data.mixture[0].source": {"uri": "s3://bucket/data"}},
        "spec.data.mixture[0].source.format",
        "required with uri",
    ),
    (
        "data-ref-both",
        T,
        {"spec.data.mixture[0].source.curationRun": "recaption"},
        "spec.data.mixture[0].source",
        "exactly one of curationRun, uri",
    ),
    (
        "format-unknown",
        T,
        {"spec.data.mixture[0].source": {"uri": "/d", "format": "csv"}},
        "spec.data.mixture[0].source.format",
        "'parquet', 'jsonl' or 'webdataset'",
    ),
    (
        "mixture-names-repeat",
        T,
        {"spec.data.mixture[1]": {"name": "shapes", "source": {"uri": "synthetic://shapes?n=8"}}},
        "spec.data.mixture[1].name",
        "appears twice",
    ),
    ("weight-zero", T, {"spec.data.mixture[0].weight": 0}, "spec.data.mixture[0].weight", "greater than 0"),
    (
        "zero-stage-without-deepspeed",
        T,
        {"spec.parallelism": {"engine": "fsdp", "zeroStage": 3}},
        "spec.parallelism.zeroStage",
        "deepspeed only",
    ),
    ("engine-unknown", T, {"spec.parallelism": {"engine": "megatron"}}, "spec.parallelism.engine", "found 'megatron'"),
    (
        "gpus-negative",
        T,
        {"spec.runtime": {"gpusPerNode": -1}},
        "spec.runtime.gpusPerNode",
        "greater than or equal to 0",
    ),
    (
        "gpus-wrong-type",
        T,
        {"spec.runtime": {"gpusPerNode": "8"}},
        "spec.runtime.gpusPerNode",
        "valid integer; found '8'",
    ),
    ("cpu-quantity", T, {"spec.runtime": {"cpu": "lots"}}, "spec.runtime.cpu", "quantity"),
    (
        "runtime-kind",
        T,
        {"spec.runtime": {"kind": "MPIJob"}},
        "spec.runtime.kind",
        "'PyTorchJob' or 'TrainJob'; found 'MPIJob'",
    ),
    ("queue-malformed", T, {"spec.runtime": {"queue": "GPU Queue"}}, "spec.runtime.queue", "pattern"),
    ("checkpoint-missing", T, {"spec.checkpoint": DELETE}, "spec.checkpoint", "required field is missing"),
    ("spec-missing", T, {"spec": DELETE}, "spec", "required field is missing"),
    ("mixture-not-a-list", T, {"spec.data.mixture": {"name": "x"}}, "spec.data.mixture", "valid list"),
    (
        "step-undeclared-model",
        C,
        {"spec.steps[0].recaption.model": "writer"},
        "spec.steps[0].recaption.model",
        "declared: captioner); found 'writer'",
    ),
    (
        "judge-without-models",
        C,
        {"spec.models": [], "spec.steps": [{"judge": {"model": "judge"}}]},
        "spec.steps[0].judge.model",
        "declared: none",
    ),
    ("step-two-kinds", C, {"spec.steps[1].dedup": {"image": "exact"}}, "spec.steps[1]", "found 2: filter, dedup"),
    ("step-empty", C, {"spec.steps[1]": {}}, "spec.steps[1]", "found none"),
    ("steps-empty", C, {"spec.steps": []}, "spec.steps", "at least 1 item"),
    (
        "judge-min-score",
        C,
        {"spec.steps[1]": {"judge": {"model": "captioner", "minScore": 6}}},
        "spec.steps[1].judge.minScore",
        "less than or equal to 5",
    ),
    (
        "dedup-nothing",
        C,
        {"spec.steps[2].dedup": {"threshold": 0.9}},
        "spec.steps[2].dedup",
        "at least one of image, text",
    ),
    (
        "filter-bounds",
        C,
        {"spec.steps[1].filter.maxChars": 5},
        "spec.steps[1].filter.minChars",
        "at most maxChars (5); found 10",
    ),
    (
        "serving-name-long",
        C,
        {"spec.models[0].name": "captioner-version2", "spec.steps[0].recaption.model": "captioner-version2"},
        "spec.models[0].name",
        "at most 17 characters; found 18",
    ),
    ("replicas-zero", C, {"spec.models[0].replicas": 0}, "spec.models[0].replicas", "greater than or equal to 1"),
    (
        "tensor-parallel",
        C,
        {"spec.models[0].gpusPerReplica": 4, "spec.models[0].tensorParallelSize": 3},
        "spec.models[0].tensorParallelSize",
        "divide gpusPerReplica (4); found 3",
    ),
    (
        "model-names-repeat",
        C,
        {"spec.models[1]": {"name": "captioner", "model": {"uri": "/m"}}},
        "spec.models[1].name",
        "appears twice",
    ),
    ("input-missing", C, {"spec.input": DELETE}, "spec.input", "required field is missing"),
    (
        "benchmark-unknown",
        E,
        {"spec.benchmarks[0]": "MMBench"},
        "spec.benchmarks[0]",
        "unknown benchmark 'MMBench' (did you mean",
    ),
    ("benchmark-repeated", E, {"spec.benchmarks[1]": "shapes_vqa"}, "spec.benchmarks[1]", "listed twice"),
    (
        "override-not-listed",
        E,
        {"spec.overrides": {"shapes_ocr": {"limit": 5}}},
        "spec.overrides.shapes_ocr",
        "not listed in benchmarks",
    ),
    (
        "override-range",
        E,
        {"spec.overrides": {"shapes_vqa": {"maxTiles": 0}}},
        "spec.overrides.shapes_vqa.maxTiles",
        "greater than or equal to 1",
    ),
    (
        "paper-benchmark-on-synthetic",
        E,
        {"spec.benchmarks[1]": "POPE"},
        "spec.benchmarks[1]",
        "synthetic:// data serves only",
    ),
    ("eval-model-missing", E, {"spec.model": DELETE}, "spec.model", "required field is missing"),
    (
        "synthetic-unknown-generator",
        E,
        {"spec.data.uri": "synthetic://faces?n=3"},
        "spec.data.uri",
        "unknown synthetic generator 'faces'",
    ),
]

# Mistakes only the sailvl API's own routing can catch (the server routes by apiVersion and kind).
ROUTING_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "wrong-api-version",
        {"apiVersion": "sailvl.io/v1"},
        "apiVersion",
        "expected 'sailvl.io/v1alpha1'; found 'sailvl.io/v1'",
    ),
    ("unknown-kind", {"kind": "TrainJob"}, "kind", "TrainStage, CurationRun, EvalSuite; found 'TrainJob'"),
    ("kind-missing", {"kind": DELETE}, "kind", "found nothing"),
]


def _issues(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_resource(doc)
    return [str(i) for i in info.value.issues]


def test_the_table_is_large_and_distinct() -> None:
    assert len(CASES) + len(ROUTING_CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "kind", "changes", "path", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_models_refuse_with_the_field_path(
    case: str, kind: str, changes: dict[str, Any], path: str, fragment: str
) -> None:
    issues = _issues(mutated(BASES[kind], changes))
    assert any(i.startswith(f"{path}: ") and fragment in i for i in issues), issues


@pytest.mark.parametrize(("case", "kind", "changes", "path", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_crd_refuses_the_same_mistake(case: str, kind: str, changes: dict[str, Any], path: str, fragment: str) -> None:
    assert server_errors(crd_for(KINDS[kind]), mutated(BASES[kind], changes)) != []


@pytest.mark.parametrize(("case", "changes", "path", "fragment"), ROUTING_CASES, ids=[c[0] for c in ROUTING_CASES])
def test_api_version_and_kind_are_checked_first(case: str, changes: dict[str, Any], path: str, fragment: str) -> None:
    issues = _issues(mutated(BASES["TrainStage"], changes))
    assert any(i.startswith(f"{path}: ") and fragment in i for i in issues), issues


def test_independent_mistakes_are_all_reported() -> None:
    doc = mutated(
        BASES["TrainStage"],
        {"spec.optimizer.lr": -1.0, "spec.runtime": {"cpu": "x"}, "spec.epochz": 1, "metadata.name": "Bad"},
    )
    paths = sorted(i.split(":")[0] for i in _issues(doc))
    assert paths == ["metadata.name", "spec.epochz", "spec.optimizer.lr", "spec.runtime.cpu"]


def test_a_non_mapping_document_is_refused() -> None:
    assert _issues(["not", "a", "mapping"]) == ["a document must be a mapping; found list"]  # type: ignore[arg-type]
