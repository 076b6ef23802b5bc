"""Exact resume: a gang restart continues the very loss curve an uninterrupted run draws, whatever killed it.

The runs are real processes killed with SIGKILL, as a node failure or an OOM kill does. The stage packs samples
from two sources, so the data state resumed includes the mixture's counters and the samples carried from one
packed step to the next.
"""

from __future__ import annotations

import logging
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainkit import (
    CAPTIONS,
    final_weights,
    kill_when,
    latest,
    losses,
    python_train,
    run_here,
    run_process,
    tiny_stage,
    write_spec,
)

pytestmark = pytest.mark.slow

ALT_TEXT = "synthetic://shapes?n=200&seed=3&split=alt&size=96-128"


def resume_stage(checkpoints: Path) -> dict[str, Any]:
    mixture = [
        {"name": "captions", "source": {"uri": CAPTIONS}, "weight": 2.0},
        {"name": "alt-text", "source": {"uri": ALT_TEXT}, "weight": 1.0},
    ]
    return tiny_stage(
        checkpoints,
        **{
            "data.mixture": mixture,
            "data.packing": True,
            "batch.globalSize": 2,
            "budget.steps": 20,
            "checkpoint.intervalSteps": 5,
        },
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = run_process(python_train(write_spec(folder, resume_stage(folder / "ckpt"))))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(losses(folder / "ckpt")) == 20
    return folder / "ckpt"


def _assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    assert losses(resumed) == losses(uninterrupted)  # exactly: the same numbers, step by step
    expected = final_weights(uninterrupted)
    got = final_weights(resumed)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_sigkill_then_restart_continues_the_same_run(tmp_path: Path, uninterrupted: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    spec = write_spec(tmp_path, resume_stage(checkpoints))

    killed = kill_when(python_train(spec), lambda: latest(checkpoints) == "step-10")
    assert killed.returncode == -9
    assert not (checkpoints / "final").exists()

    restarted = run_process(python_train(spec))
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert f"resumed from {checkpoints / 'step-10'}: step 10," in restarted.stderr
    _assert_same_run(checkpoints, uninterrupted)


DIE_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch

    save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)
        if ".step-10.partial" in str(f) and str(f).endswith("optimizer.pt"):
            with open(f, "r+b") as half:  # the file is cut short, as a kill in the middle of writing leaves it
                half.truncate(os.path.getsize(f) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die
    from sailvl.train.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path: Path, uninterrupted: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    spec = write_spec(tmp_path, resume_stage(checkpoints))
    driver = tmp_path / "die_during_save.py"
    driver.write_text(DIE_DURING_SAVE)

    killed = run_process([*python_train(spec)[:1], str(driver), "--spec", str(spec)])
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert latest(checkpoints) == "step-5"
    assert (checkpoints / ".step-10.partial").is_dir() and not (checkpoints / "step-10").exists()

    restarted = run_process(python_train(spec))
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert f"resumed from {checkpoints / 'step-5'}: step 5," in restarted.stderr
    assert not (checkpoints / ".step-10.partial").exists()
    _assert_same_run(checkpoints, uninterrupted)


def test_damaged_latest_falls_back_to_the_previous_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoints = tmp_path / "ckpt"
    doc = tiny_stage(checkpoints, **{"budget.steps": 4, "checkpoint.intervalSteps": 2, "checkpoint.keep": 3})
    run_here(doc)
    first = losses(checkpoints)
    shutil.rmtree(checkpoints / "final")
    with open(checkpoints / "step-4" / "optimizer.pt", "r+b") as f:
        f.truncate(100)

    with caplog.at_level(logging.INFO, logger="sailvl.train"):
        result = run_here(doc)

    messages = [r.getMessage() for r in caplog.records]
    assert any("not resuming from" in m and "optimizer.pt has 100 bytes" in m for m in messages), messages
    assert any(m.startswith(f"resumed from {checkpoints / 'step-2'}: step 2,") for m in messages), messages
    assert losses(checkpoints) == first
    assert result.steps == 4 and (checkpoints / "final").is_dir()


def test_a_finished_stage_run_again_trains_nothing_more(tmp_path: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    doc = tiny_stage(checkpoints, **{"budget.steps": 2, "checkpoint.intervalSteps": 5})
    first = run_here(doc)
    again = run_here(doc)
    assert again == first
    assert len(losses(checkpoints)) == 2
