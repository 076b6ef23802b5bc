"""The stage's result: `final/` loads in transformers as it is, a next stage starts from exactly its weights, the
operator gets its termination message and exit codes, and rank 0 exports the registered metrics."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoImageProcessor, AutoTokenizer, InternVLForConditionalGeneration

from sailvl.api.manifest import parse_resource
from sailvl.api.metrics import METRICS
from sailvl.api.trainstage import ModelSpec, TrainStage
from sailvl.data.mixture import Mixture
from sailvl.data.packing import collate_padded
from sailvl.data.sources import open_source
from sailvl.data.templates import Renderer
from sailvl.model.build import build_model, build_preset
from sailvl.model.checkpoint import export_checkpoint, load_checkpoint
from sailvl.train.cli import main
from sailvl.train.reporting import StepReport, TrainerMetrics
from tests.trainkit import CAPTIONS, final_weights, run_here, step_weights, termination, tiny_stage, write_spec

PROJECTOR = "model.multi_modal_projector."


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoints = tmp_path_factory.mktemp("first") / "ckpt"
    run_here(tiny_stage(checkpoints, **{"budget.steps": 3, "checkpoint.intervalSteps": 3}))
    return checkpoints


def _batch(folder: Path) -> dict[str, torch.Tensor]:
    built = load_checkpoint(folder)
    render = Renderer(
        tokenizer=built.tokenizer,
        template="caption",
        tiler=built.tiler,
        tokens_per_tile=built.tokens_per_tile,
        max_length=96,
    )
    mixture = Mixture([("captions", open_source(CAPTIONS), 1.0)], seed=5)
    samples = [render(next(mixture).record) for _ in range(2)]
    return collate_padded(samples, built.tokenizer.pad_token_id)


def test_final_loads_in_transformers_with_the_trained_logits(first_stage: Path) -> None:
    final = first_stage / "final"
    exported = InternVLForConditionalGeneration.from_pretrained(final).eval()
    doc = json.loads((final / "sailvl_stage.json").read_text())
    trained = build_model(ModelSpec.model_validate(doc["spec"]["model"]), seed=doc["spec"]["seed"]).model.eval()
    trained.load_state_dict(step_weights(first_stage, 3))

    batch = _batch(final)
    with torch.no_grad():
        assert torch.equal(exported(**batch).logits, trained(**batch).logits)
    assert AutoTokenizer.from_pretrained(final).convert_tokens_to_ids("<IMG_CONTEXT>") == exported.config.image_token_id
    processor = AutoImageProcessor.from_pretrained(final)
    assert processor.size["height"] == 56 and processor.max_patches == 2
    stage = parse_resource(doc)
    assert isinstance(stage, TrainStage) and stage.status is not None and stage.status.resolved is not None
    assert stage.status.resolved.data == {"captions": CAPTIONS}


def test_a_second_stage_starts_from_exactly_the_exported_weights(first_stage: Path, tmp_path: Path) -> None:
    uri = str(first_stage / "final")
    doc = tiny_stage(
        tmp_path / "ckpt",
        model={"init": {"stage": "first"}},
        trainable=["projector"],
        **{"budget.steps": 1, "optimizer.lr": 1.0e-4, "optimizer.warmupRatio": 0.0},
    )
    run_here(doc, init_uri=uri)

    start, after = final_weights(first_stage), step_weights(tmp_path / "ckpt", 1)
    assert start.keys() == after.keys()
    for key in start:
        if key.startswith(PROJECTOR):
            # One AdamW step moves each weight by about lr: the projector started from the exported values.
            assert 0 < (after[key] - start[key]).abs().max() < 3e-4, key
        else:
            assert torch.equal(after[key], start[key]), key
    saved = json.loads((tmp_path / "ckpt" / "step-1" / "sailvl_stage.json").read_text())
    assert saved["spec"]["model"]["init"] == {"uri": uri}
    assert saved["status"]["resolved"]["init"] == uri


def test_termination_message_after_a_complete_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAILVL_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.setenv("SAILVL_METRICS_PORT", "off")
    spec = write_spec(tmp_path, tiny_stage(tmp_path / "ckpt", **{"budget.samples": 6, "budget.steps": None}))
    assert main(["--spec", str(spec)]) == 0
    message = termination(tmp_path / "termination-log")
    assert set(message) == {"checkpoint", "steps", "tokens", "loss"}
    assert message["checkpoint"] == f"{tmp_path / 'ckpt'}/final" and message["steps"] == 2  # 6 samples, 4 a step
    progress = json.loads((tmp_path / "ckpt" / "progress.json").read_text())
    assert (progress["step"], progress["samples"], progress["percent"]) == (2, 8, 100.0)
    assert message["tokens"] == progress["tokens"] and message["loss"] == progress["loss"]


def test_an_invalid_spec_exits_2_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAILVL_TERMINATION_LOG", str(tmp_path / "termination-log"))
    doc = tiny_stage(tmp_path / "ckpt", **{"optimizer.learningRate": 0.1})
    assert main(["--spec", str(write_spec(tmp_path, doc))]) == 2
    assert "spec.optimizer.learningRate: unknown field" in termination(tmp_path / "termination-log")["error"]

    unresolved = tiny_stage(tmp_path / "ckpt", model={"init": {"stage": "earlier"}})
    monkeypatch.delenv("SAILVL_INIT_URI", raising=False)
    assert main(["--spec", str(write_spec(tmp_path, unresolved))]) == 2
    assert "set SAILVL_INIT_URI" in termination(tmp_path / "termination-log")["error"]
    assert not (tmp_path / "ckpt").exists()


def test_a_non_finite_loss_exits_3_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = build_preset("tiny", tile_size=56, max_tiles=2, seed=0)
    with torch.no_grad():
        broken.model.lm_head.weight[0, 0] = math.nan
    export_checkpoint(broken, tmp_path / "nan-model")
    monkeypatch.setenv("SAILVL_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.setenv("SAILVL_METRICS_PORT", "off")
    doc = tiny_stage(
        tmp_path / "ckpt", model={"init": {"uri": str(tmp_path / "nan-model")}}, **{"checkpoint.intervalSteps": 1}
    )
    assert main(["--spec", str(write_spec(tmp_path, doc))]) == 3
    assert "the loss of step 1 is nan" in termination(tmp_path / "termination-log")["error"]
    assert not list((tmp_path / "ckpt").glob("step-*")) and not (tmp_path / "ckpt" / "final").exists()


def test_rank_0_serves_exactly_the_registered_trainer_metrics() -> None:
    metrics = TrainerMetrics(port=0)
    try:
        report = StepReport(
            step=7, total_steps=20, loss=2.5, lr=1e-4, grad_norm=0.5, samples=28, tokens=3000,
            tokens_per_second=1500.0, mfu=None, percent=35.0, eta_seconds=9.0, seconds=0.5,
        )  # fmt: skip
        metrics.publish(report.metric_values())
        metrics.publish(report.metric_values())  # a counter is not counted twice
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10).read().decode()
    finally:
        metrics.close()
    values = {
        s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name.startswith("sailvl_")
    }
    expected = {m.name for m in METRICS if m.exporter == "trainer"} - {"sailvl_train_mfu_ratio"}
    assert expected <= set(values) and all(n in expected or n.endswith("_created") for n in values)
    assert values["sailvl_train_step"] == 7 and values["sailvl_train_total_steps"] == 20
    assert values["sailvl_train_tokens_total"] == 3000 and values["sailvl_train_loss"] == 2.5
    assert "sailvl_train_mfu_ratio" not in values  # no peak FLOP/s on a CPU: absent, not NaN


def test_sailvl_train_is_a_subcommand() -> None:
    from sailvl.cli import build_parser

    args = build_parser().parse_args(["train", "--spec", "stage.yaml", "--pvc-root", "/data"])
    assert (args.spec, args.pvc_root) == ("stage.yaml", "/data")
