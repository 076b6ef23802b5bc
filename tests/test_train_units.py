"""The trainer's pure parts: schedule, budget, batch arithmetic, DeepSpeed config, FLOPs, spec files, data state."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from sailvl.api.manifest import parse_resource
from sailvl.api.trainstage import Budget, TrainStage
from sailvl.model.build import build_preset
from sailvl.train.data import StageData
from sailvl.train.engines.deepspeed_config import deepspeed_config
from sailvl.train.flops import ModelShapes, peak_flops
from sailvl.train.schedule import BudgetMeter, Counters, LrSchedule
from sailvl.train.settings import SpecError, TrainerSettings, load_stage
from sailvl.train.trainer import gradient_accumulation, resolved_document
from tests.trainkit import CAPTIONS, tiny_stage, write_spec


def _stage(doc: dict[str, object]) -> TrainStage:
    stage = parse_resource(doc)
    assert isinstance(stage, TrainStage)
    return stage


def _lrs(schedule: LrSchedule, steps: int) -> list[float]:
    return [schedule(k / steps, (k + 1) / steps) for k in range(steps)]


def test_warmup_then_cosine_to_min_lr() -> None:
    lrs = _lrs(LrSchedule(lr=1.0, min_lr=0.1, schedule="cosine", warmup_ratio=0.2), 10)
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])  # warmup: 2 steps, the second reaches the peak
    assert all(a >= b for a, b in itertools.pairwise(lrs[2:]))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert LrSchedule(lr=1.0, min_lr=0.1, schedule="cosine", warmup_ratio=0.2)(1.0, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("linear", [1.0, 0.75, 0.5, 0.25]), ("constant", [1.0, 1.0, 1.0, 1.0])],
)
def test_linear_and_constant(schedule: str, expected: list[float]) -> None:
    assert _lrs(LrSchedule(lr=1.0, min_lr=0.0, schedule=schedule, warmup_ratio=0.0), 4) == pytest.approx(expected)


def test_budgets_are_counted_as_trained() -> None:
    def meter(packing: bool = False, **budget: float) -> BudgetMeter:
        return BudgetMeter(budget=Budget.model_validate(budget), rows=100, global_batch=8, packing=packing)

    counters = Counters().after(8, 500).after(8, 700)
    assert meter(steps=4).fraction(counters) == 0.5 and meter(steps=4).total_steps(counters) == 4
    assert meter(samples=20).total_steps(Counters()) == 3  # 20 samples at 8 a step, the last step whole
    assert not meter(samples=20).done(counters) and meter(samples=16).done(counters)
    assert meter(tokens=2400).total_steps(Counters()) is None
    assert meter(tokens=2400).total_steps(counters) == 4  # 1200 tokens in 2 steps: 2 more
    assert meter(epochs=0.16).done(counters) and meter(epochs=0.16).target == pytest.approx(16)
    assert meter(packing=True, samples=32).total_steps(counters) == 4


def test_gradient_accumulation_must_divide(tmp_path: Path) -> None:
    spec = _stage(tiny_stage(tmp_path, **{"batch.globalSize": 12, "batch.microSize": 2})).spec
    assert gradient_accumulation(spec, 1) == 6 and gradient_accumulation(spec, 3) == 2
    with pytest.raises(SpecError, match=r"globalSize 12 is not a multiple of microSize x processes = 2 x 4 = 8"):
        gradient_accumulation(spec, 4)


def test_deepspeed_config_follows_the_spec(tmp_path: Path) -> None:
    doc = tiny_stage(
        tmp_path, parallelism={"engine": "deepspeed", "zeroStage": 3}, **{"batch.globalSize": 16, "batch.microSize": 2}
    )
    config = deepspeed_config(_stage(doc).spec, world_size=4, accumulation=2, bf16=True, gpu=True)
    assert (
        config["train_batch_size"],
        config["train_micro_batch_size_per_gpu"],
        config["gradient_accumulation_steps"],
    ) == (16, 2, 2)
    assert config["zero_optimization"]["stage"] == 3 and config["bf16"] == {"enabled": True}
    assert config["gradient_clipping"] == 1.0 and "optimizer" not in config and "scheduler" not in config
    default = deepspeed_config(
        _stage(tiny_stage(tmp_path, parallelism={"engine": "deepspeed"})).spec,
        world_size=1,
        accumulation=4,
        bf16=False,
        gpu=False,
    )
    assert default["zero_optimization"]["stage"] == 2


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA A10G", 125e12),
        ("Tesla T4", None),
        (None, None),
    ],
)
def test_peak_flops_table(name: str | None, peak: float | None) -> None:
    assert peak_flops(name, "bf16") == peak


def test_flops_count_what_trains() -> None:
    model = build_preset("tiny", tile_size=56, device="meta").model
    full = ModelShapes.of(model, ["vision", "projector", "language"])
    only_projector = ModelShapes.of(model, ["projector"])
    language = full.language_params
    assert (
        language
        == sum(p.numel() for p in model.model.language_model.parameters())
        + model.lm_head.weight.numel()
        - model.get_input_embeddings().weight.numel()
    )
    # Text only, no attention: 6N per token when everything trains; 4N when only the projector does (the gradient
    # still flows back through the language model to reach it).
    assert full.step_flops(tokens=10, squares=0, tiles=0) == 6 * language * 10
    assert only_projector.step_flops(tokens=10, squares=0, tiles=0) == 4 * language * 10
    with_tile = only_projector.step_flops(tokens=0, squares=0, tiles=1) - only_projector.step_flops(
        tokens=0, squares=0, tiles=0
    )
    vision_forward = 2 * only_projector.vision_params * only_projector.patches_per_tile
    assert with_tile > vision_forward  # the frozen vision tower runs forward only; the projector trains


def test_spec_files_yaml_json_and_errors(tmp_path: Path) -> None:
    doc = tiny_stage(tmp_path / "ckpt")
    assert load_stage(write_spec(tmp_path, doc)).spec.budget.steps == 6
    (tmp_path / "spec.json").write_text(json.dumps(doc))
    assert load_stage(tmp_path / "spec.json").name == "tiny"
    with pytest.raises(SpecError, match=r"cannot read the file"):
        load_stage(tmp_path / "missing.yaml")
    (tmp_path / "two.yaml").write_text("kind: EvalSuite\n---\nkind: CurationRun\n")
    with pytest.raises(
        SpecError, match=r"expected exactly one TrainStage document; found kinds \['EvalSuite', 'CurationRun'\]"
    ):
        load_stage(tmp_path / "two.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpecError, match=r"bad.json: not valid JSON"):
        load_stage(tmp_path / "bad.json")


def test_settings_from_the_environment() -> None:
    settings = TrainerSettings.from_env(
        {
            "SAILVL_INIT_URI": "/ckpt/a/final",
            "SAILVL_PVC_ROOT": "/pvc",
            "SAILVL_METRICS_PORT": "9500",
            "SAILVL_TERMINATION_LOG": "/tmp/t",
        }
    )
    assert (settings.init_uri, settings.pvc_root, settings.metrics_port, str(settings.termination_log)) == (
        "/ckpt/a/final",
        "/pvc",
        9500,
        "/tmp/t",
    )
    assert TrainerSettings.from_env({"SAILVL_PVC_ROOT": "/pvc"}, pvc_root="/other").pvc_root == "/other"
    assert TrainerSettings.from_env({"SAILVL_METRICS_PORT": "off"}).metrics_port is None
    with pytest.raises(SpecError, match=r"SAILVL_METRICS_PORT must be a port number 0-65535 or 'off'; found 'http'"):
        TrainerSettings.from_env({"SAILVL_METRICS_PORT": "http"})


def test_the_resolved_spec_records_its_lineage(tmp_path: Path) -> None:
    stage = _stage(tiny_stage(tmp_path, model={"init": {"stage": "align"}}))
    document = resolved_document(stage, "/ckpt/align/final")
    assert document["spec"]["model"]["init"] == {"uri": "/ckpt/align/final"}
    assert document["status"]["resolved"] == {"init": "/ckpt/align/final", "data": {"captions": CAPTIONS}}
    assert _stage(document).spec.optimizer.schedule == "cosine"  # defaults filled in, still a valid TrainStage


def test_packed_data_state_resumes_the_same_batches(tmp_path: Path) -> None:
    spec = _stage(tiny_stage(tmp_path, **{"data.packing": True, "batch.microSize": 2})).spec
    built = build_preset("tiny", tile_size=56, max_tiles=2, seed=0)
    first = StageData(spec, built, rank=0, world_size=1)
    for _ in range(2):
        step = first.next_step(2)
        assert len(step.micro_batches) == 2 and all(b["input_ids"].shape[0] == 2 for b in step.micro_batches)
        assert all(b["input_ids"].shape[1] <= 96 for b in step.micro_batches)
    assert first.pending, "packing carries the samples of the rows left over"
    state = json.loads(json.dumps(first.state_dict()))
    second = StageData(spec, built, rank=0, world_size=1)
    second.load_state_dict(state)
    for _ in range(2):
        a, b = first.next_step(2), second.next_step(2)
        assert (a.samples, a.tokens, a.targets, a.lengths) == (b.samples, b.tokens, b.targets, b.lengths)
        for x, y in zip(a.micro_batches, b.micro_batches, strict=True):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_the_gpu_benchmark_builds_sail_vl_2b_as_the_preset_does() -> None:
    import importlib.util

    from sailvl.model.presets import PRESETS

    spec = importlib.util.spec_from_file_location(
        "gpu_step", Path(__file__).parent.parent / "benchmarks" / "gpu_step.py"
    )
    assert spec is not None and spec.loader is not None
    gpu_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_step)
    preset = PRESETS["sail-vl-2b"]
    assert {k: v for k, v in gpu_step.VISION.items() if k not in ("image_size", "patch_size")} == preset.vision
    assert gpu_step.VISION["image_size"] == preset.tile_size and gpu_step.VISION["patch_size"] == 14
    assert {k: v for k, v in gpu_step.TEXT.items() if k != "tie_word_embeddings"} == preset.text
    assert gpu_step.TEXT["tie_word_embeddings"] == preset.tie_word_embeddings

    built = build_preset("sail-vl-2b", device="meta").model
    with torch.device("meta"):
        from transformers import InternVLForConditionalGeneration

        benchmark_model = InternVLForConditionalGeneration(gpu_step.sail_vl_2b_config())
    assert gpu_step.shapes(benchmark_model) == ModelShapes.of(built, ["vision", "projector", "language"])
    assert sum(p.numel() for p in benchmark_model.parameters()) == sum(p.numel() for p in built.parameters())


def test_packed_rows_without_the_explicit_mask_give_the_same_loss(tmp_path: Path) -> None:
    """On a GPU the trainer passes position ids only and transformers builds the packed mask from them."""
    from sailvl.train.step import token_loss_sum

    spec = _stage(tiny_stage(tmp_path, **{"data.packing": True, "batch.microSize": 2})).spec
    built = build_preset("tiny", tile_size=56, max_tiles=2, seed=0)
    masked = StageData(spec, built, rank=0, world_size=1, block_mask=True).next_step(1).micro_batches[0]
    unmasked = StageData(spec, built, rank=0, world_size=1, block_mask=False).next_step(1).micro_batches[0]
    assert "attention_mask" in masked and "attention_mask" not in unmasked
    with torch.no_grad():
        assert torch.equal(token_loss_sum(built.model, masked), token_loss_sum(built.model, unmasked))
