"""The models as Python code uses them: defaults, round trips, references, conditions and phases."""

from __future__ import annotations

from typing import Any

import pytest

from sailvl.api import BENCHMARKS, GROUPS, PAPER_BENCHMARKS, CurationRun, EvalSuite, TrainStage, parse_resource
from sailvl.api.conditions import (
    DEPENDENCIES_READY,
    FAILED,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    VALID,
    derive_phase,
    find_condition,
    set_condition,
)
from sailvl.api.graph import dependency_cycles
from tests.manifests import CURATION, EVAL, TRAIN, mutated


def test_defaults_fill_a_minimal_stage() -> None:
    stage = parse_resource(TRAIN)
    assert isinstance(stage, TrainStage)
    spec = stage.spec
    assert (spec.parallelism.engine, spec.precision, spec.runtime.kind, spec.runtime.gpus_per_node) == (
        "ddp",
        "bf16",
        "PyTorchJob",
        0,
    )
    assert spec.optimizer.betas == [0.9, 0.999]
    assert spec.gradient_accumulation == 4  # 8 / (2 per process x 1 process)


def test_gradient_accumulation_follows_the_gang() -> None:
    stage = parse_resource(
        mutated(TRAIN, {"spec.runtime": {"nodes": 2, "gpusPerNode": 2}, "spec.batch.globalSize": 32})
    )
    assert isinstance(stage, TrainStage)
    assert stage.spec.runtime.world_size == 4
    assert stage.spec.gradient_accumulation == 4


@pytest.mark.parametrize("doc", [TRAIN, CURATION, EVAL])
def test_round_trip_is_lossless(doc: dict[str, Any]) -> None:
    resource = parse_resource(doc)
    again = parse_resource(resource.to_manifest())
    assert again == resource
    assert resource.to_manifest()["apiVersion"] == "sailvl.io/v1alpha1"


def test_objects_read_back_from_a_cluster_validate() -> None:
    served = mutated(
        TRAIN,
        {
            "metadata": {
                "name": "align",
                "namespace": "research",
                "uid": "3f1c",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
            },
            "status": {
                "observedGeneration": 3,
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Running",
                        "status": "True",
                        "reason": "JobRunning",
                        "lastTransitionTime": "2026-01-01T00:01:00Z",
                    }
                ],
                "job": {"kind": "PyTorchJob", "name": "align-train-a0", "attempt": 0},
                "progress": {"step": 10, "totalSteps": 20, "percent": 50.0, "loss": 2.5, "eta": "3m"},
            },
        },
    )
    stage = parse_resource(served)
    assert isinstance(stage, TrainStage) and stage.status is not None
    assert stage.namespace == "research"
    assert stage.status.progress is not None and stage.status.progress.percent == 50.0


def test_references_name_what_a_resource_waits_for() -> None:
    stage = parse_resource(
        mutated(
            TRAIN, {"spec.model": {"init": {"stage": "prev"}}, "spec.data.mixture[0].source": {"curationRun": "cap"}}
        )
    )
    assert stage.references() == [("TrainStage", "prev"), ("CurationRun", "cap")]
    curation = parse_resource(CURATION)
    assert isinstance(curation, CurationRun)
    assert curation.references() == [("TrainStage", "captioner")]
    assert [s.kind for s in curation.spec.steps] == ["recaption", "filter", "dedup"]
    suite = parse_resource(EVAL)
    assert isinstance(suite, EvalSuite)
    assert suite.references() == [("TrainStage", "align")]


def test_cycles_are_found_and_acyclic_chains_are_not() -> None:
    a = parse_resource(mutated(TRAIN, {"metadata.name": "a", "spec.model": {"init": {"stage": "b"}}}))
    b = parse_resource(mutated(TRAIN, {"metadata.name": "b"}))
    assert dependency_cycles([a, b]) == []
    b_loop = parse_resource(mutated(TRAIN, {"metadata.name": "b", "spec.model": {"init": {"stage": "a"}}}))
    assert len(dependency_cycles([a, b_loop])) == 1


def test_benchmark_registry_and_groups() -> None:
    assert len(PAPER_BENCHMARKS) == 17
    grouped = [name for members in GROUPS.values() for name in members]
    assert sorted(grouped) == sorted(PAPER_BENCHMARKS)
    assert set(BENCHMARKS) - set(PAPER_BENCHMARKS) == {
        "shapes_caption",
        "shapes_vqa",
        "shapes_count",
        "shapes_ocr",
        "shapes_pope",
    }


def test_group_scores_use_the_status_keys() -> None:
    suite = parse_resource(
        mutated(EVAL, {"status": {"results": {"POPE": 85.0}, "groups": {"hallucination": 85.0, "generalVQA": 70.0}}})
    )
    assert isinstance(suite, EvalSuite) and suite.status is not None and suite.status.groups is not None
    assert suite.status.groups.general_vqa == 70.0
    assert suite.to_manifest()["status"]["groups"] == {"generalVQA": 70.0, "hallucination": 85.0}


def test_set_condition_moves_transition_time_only_on_change() -> None:
    conditions = set_condition([], RUNNING, "True", "JobRunning", now="2026-01-01T00:00:00Z", generation=1)
    conditions = set_condition(conditions, RUNNING, "True", "JobRunning", "step 5", now="2026-01-01T01:00:00Z")
    running = find_condition(conditions, RUNNING)
    assert running is not None
    assert (running.last_transition_time, running.message) == ("2026-01-01T00:00:00Z", "step 5")
    conditions = set_condition(conditions, RUNNING, "False", "Completed", now="2026-01-01T02:00:00Z")
    running = find_condition(conditions, RUNNING)
    assert running is not None and running.last_transition_time == "2026-01-01T02:00:00Z"


def test_conditions_keep_a_stable_order() -> None:
    conditions = set_condition([], SUCCEEDED, "True", "Completed")
    conditions = set_condition(conditions, VALID, "True", "SpecValid")
    conditions = set_condition(conditions, "CustomThing", "True", "Because")
    assert [c.type for c in conditions] == [VALID, SUCCEEDED, "CustomThing"]


@pytest.mark.parametrize(
    ("steps", "restarting", "phase"),
    [
        ([], False, "Pending"),
        ([(VALID, "True")], False, "Pending"),
        ([(VALID, "False")], False, "Failed"),
        ([(VALID, "True"), (DEPENDENCIES_READY, "False")], False, "Waiting"),
        ([(DEPENDENCIES_READY, "True"), (RUNNING, "True")], False, "Running"),
        ([(RUNNING, "False")], True, "Restarting"),
        ([(RUNNING, "False"), (SUSPENDED, "True")], False, "Suspended"),
        ([(RUNNING, "False"), (FAILED, "True")], False, "Failed"),
        ([(RUNNING, "False"), (SUCCEEDED, "True")], False, "Succeeded"),
    ],
)
def test_phase_is_derived_from_conditions(steps: list[tuple[str, str]], restarting: bool, phase: str) -> None:
    conditions: list[Any] = []
    for type_, status in steps:
        conditions = set_condition(conditions, type_, status, "Because")  # type: ignore[arg-type]
    assert derive_phase(conditions, restarts_pending=restarting) == phase
