"""The local runner's pure parts: the graph, resolution of references, status tables, the report's claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from sailvl.api import parse_resource
from sailvl.api.conditions import set_condition
from sailvl.api.evalsuite import EvalSuiteStatus
from sailvl.api.trainstage import TrainProgress, TrainStageStatus
from sailvl.local.graph import GraphError, build_graph
from sailvl.local.report import Suite, claims
from sailvl.local.resolve import Outputs, ResolveError, local_path, resolve
from sailvl.local.state import LocalRecord, State
from sailvl.local.status import age, status_table
from tests.manifests import CURATION, EVAL, TRAIN, mutated


def _stage(name: str, init: str | None = None, data_from: str | None = None):  # type: ignore[no-untyped-def]
    changes: dict[str, object] = {"metadata.name": name, "spec.checkpoint.uri": f"pvc://ckpt/{name}"}
    if init:
        changes["spec.model"] = {"init": {"stage": init}}
    if data_from:
        changes["spec.data.mixture[0].source"] = {"curationRun": data_from}
    return parse_resource(mutated(TRAIN, changes))


def test_order_follows_references() -> None:
    curation = parse_resource(mutated(CURATION, {"spec.models[0].model": {"stage": "cap"}}))
    graph = build_graph([_stage("b", init="a", data_from="recaption"), curation, _stage("cap"), _stage("a")])
    order = [name for _, name in graph.order()]
    assert order.index("cap") < order.index("recaption") < order.index("b")
    assert order.index("a") < order.index("b")
    assert [n for _, n in graph.dependents(("TrainStage", "cap"))] == ["recaption", "b"]


def test_dangling_references_and_cycles_are_named() -> None:
    with pytest.raises(GraphError, match="TrainStage/b refers to TrainStage/missing, which is not among the files"):
        build_graph([_stage("b", init="missing")])
    with pytest.raises(GraphError, match="dependency cycle: TrainStage/a -> TrainStage/b -> TrainStage/a"):
        build_graph([_stage("a", init="b"), _stage("b", init="a")])


def test_resolve_replaces_references_and_maps_claims(tmp_path: Path) -> None:
    stage = _stage("b", init="a", data_from="recaption")
    outputs = Outputs(checkpoints={"a": "/runs/a/final"}, datasets={"recaption": "/runs/curated"})
    resolved = resolve(stage, outputs, pvc_root=tmp_path, scale=0.5)
    assert resolved.spec.model.init is not None and resolved.spec.model.init.uri == "/runs/a/final"
    source = resolved.spec.data.mixture[0].source
    assert (source.uri, source.format) == ("/runs/curated", "parquet")
    assert resolved.spec.checkpoint.uri == str(tmp_path / "ckpt" / "b")
    assert resolved.spec.budget.steps == 10  # 20 x 0.5
    with pytest.raises(ResolveError, match="TrainStage/a has no final checkpoint yet"):
        resolve(stage, Outputs({}, {}), pvc_root=tmp_path)


def test_resolve_eval_model_and_serving_models(tmp_path: Path) -> None:
    suite = resolve(parse_resource(EVAL), Outputs({"align": "/ck/align"}, {}), pvc_root=tmp_path)
    assert suite.spec.model.uri == "/ck/align"  # type: ignore[attr-defined]
    run = resolve(parse_resource(CURATION), Outputs({"captioner": "/ck/cap"}, {}), pvc_root=tmp_path)
    assert run.spec.models[0].model.uri == "/ck/cap"  # type: ignore[attr-defined]
    assert run.spec.output.uri == str(tmp_path / "data" / "curated")  # type: ignore[attr-defined]


def test_local_path() -> None:
    assert local_path("pvc://data/x/y", Path("/root")) == "/root/data/x/y"
    assert local_path("file:///tmp/x", Path("/root")) == "/tmp/x"
    assert local_path("s3://bucket/x", Path("/root")) == "s3://bucket/x"


def test_state_round_trip_and_status_table(tmp_path: Path) -> None:
    state = State(tmp_path, "TrainStage", "align")
    status = TrainStageStatus(
        progress=TrainProgress(step=5, percent=25.0, loss=1.25), start_time="2026-01-01T00:00:00Z"
    )
    status.conditions = set_condition([], "Running", "True", "JobRunning")
    status.phase = "Running"
    state.save(status, LocalRecord(endpoints={"metrics": "http://127.0.0.1:1/metrics"}))
    loaded, local = state.load()
    assert loaded == status and local.endpoints["metrics"].endswith("/metrics")
    table = status_table(tmp_path).splitlines()
    assert table[0].split() == ["NAME", "KIND", "PHASE", "PROGRESS", "KEY", "FIGURE", "AGE"]
    assert table[1].split()[:5] == ["align", "TrainStage", "Running", "25%", "loss=1.2500"]
    assert "no resources" in status_table(tmp_path / "empty")


def test_age_reads_like_kubectl() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    assert age("2026-01-01T00:00:00Z", now) == "2h"
    assert age("2026-01-01T02:29:30Z", now) == "30s"


def _suite(name: str, labels: dict[str, str], results: dict[str, float]) -> Suite:
    average = sum(results.values()) / len(results) if results else None
    return Suite(name, labels, EvalSuiteStatus(results=results, average=average))


def test_claims_come_from_the_labelled_suites() -> None:
    suites = [
        _suite(
            "cur",
            {"report.sailvl.io/branch": "curated", "report.sailvl.io/curriculum": "0"},
            {"shapes_caption": 40, "shapes_vqa": 20},
        ),
        _suite("raw", {"report.sailvl.io/branch": "raw"}, {"shapes_caption": 30, "shapes_vqa": 25}),
        _suite("end", {"report.sailvl.io/curriculum": "3"}, {"shapes_caption": 50, "shapes_vqa": 60}),
    ]
    result = claims(suites)
    assert result["curated_beats_raw"] is True and result["average_rises"] is True
    assert result["caption"]["raw"]["score"] == 30
    worse = claims([suites[0], _suite("raw", {"report.sailvl.io/branch": "raw"}, {"shapes_caption": 45})])
    assert worse["curated_beats_raw"] is False and worse["average_rises"] is None
