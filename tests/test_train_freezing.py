"""Freezing per `trainable`: what does not train stays bit-identical to where the stage started."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sailvl.api.trainstage import ModelSpec
from sailvl.model.build import build_model
from tests.trainkit import run_here, step_weights, tiny_stage

PREFIXES = {
    "vision": "model.vision_tower.",
    "projector": "model.multi_modal_projector.",
    "language": ("model.language_model.", "lm_head."),
}


def _component(name: str, key: str) -> bool:
    return key.startswith(PREFIXES[name])


@pytest.mark.parametrize(
    ("trainable", "frozen"),
    [(["projector"], ["vision", "language"]), (["vision", "projector"], ["language"])],
)
def test_frozen_components_stay_bit_identical(tmp_path: Path, trainable: list[str], frozen: list[str]) -> None:
    doc = tiny_stage(tmp_path / "ckpt", trainable=trainable, **{"budget.steps": 3, "checkpoint.intervalSteps": 3})
    start = build_model(ModelSpec.model_validate(doc["spec"]["model"]), seed=doc["spec"]["seed"]).model
    initial = {k: v.clone() for k, v in start.state_dict().items()}

    run_here(doc)
    trained = step_weights(tmp_path / "ckpt", 3)

    assert trained.keys() == initial.keys()
    for key, value in trained.items():
        if any(_component(c, key) for c in frozen):
            assert torch.equal(value, initial[key]), f"{key} is frozen but changed"
    for component in trainable:
        changed = [k for k in trained if _component(component, k) and not torch.equal(trained[k], initial[k])]
        assert changed, f"no parameter of {component} changed although it trains"
