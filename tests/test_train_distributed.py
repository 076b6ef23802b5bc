"""Real torch.distributed: two processes (gloo) train as one process does with the same global batch, under DDP,
FSDP2 and DeepSpeed ZeRO-2 (CPU); DeepSpeed's own checkpoints resume a killed run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainkit import kill_when, latest, losses, python_train, run_process, tiny_stage, torchrun, write_spec

pytestmark = pytest.mark.slow

# Float sums in another order (two processes reduce gradients) differ in the last bits; over 6 steps that stays far
# below this.
RTOL = 1e-4


def stage(checkpoints: Path, engine: str, **extra: Any) -> dict[str, Any]:
    return tiny_stage(
        checkpoints,
        **{"parallelism": {"engine": engine, **extra}, "budget.steps": 6, "checkpoint.intervalSteps": 3},
    )


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    folder = tmp_path_factory.mktemp("one-process")
    result = run_process(python_train(write_spec(folder, stage(folder / "ckpt", "ddp"))))
    assert result.returncode == 0, result.stderr[-3000:]
    return losses(folder / "ckpt")


@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path: Path, one_process: list[float], engine: str) -> None:
    spec = write_spec(tmp_path, stage(tmp_path / "ckpt", engine))
    result = run_process(torchrun(spec, 2))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 process(es)" in result.stderr and "accumulation 2" in result.stderr
    assert losses(tmp_path / "ckpt") == pytest.approx(one_process, rel=RTOL)
    assert (tmp_path / "ckpt" / "final" / "model.safetensors").is_file()


def test_deepspeed_zero2_trains_checkpoints_and_resumes(tmp_path: Path, one_process: list[float]) -> None:
    checkpoints = tmp_path / "ckpt"
    spec = write_spec(tmp_path, stage(checkpoints, "deepspeed", zeroStage=2))

    killed = kill_when(torchrun(spec, 2), lambda: latest(checkpoints) == "step-3", DS_ACCELERATOR="cpu")
    assert killed.returncode != 0
    assert (checkpoints / "step-3" / "deepspeed").is_dir()

    restarted = run_process(torchrun(spec, 2), DS_ACCELERATOR="cpu")
    assert restarted.returncode == 0, restarted.stderr[-4000:]
    assert f"resumed from {checkpoints / 'step-3'}: step 3," in restarted.stderr
    assert losses(checkpoints) == pytest.approx(one_process, rel=RTOL)
    assert (checkpoints / "final" / "model.safetensors").is_file()
