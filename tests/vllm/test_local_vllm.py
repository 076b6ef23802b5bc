"""`sailvl run --serving vllm`: the same manifests, with a real vLLM serving the CurationRun's captioner and the
EvalSuite's model; the scores and captions equal a run with `sailvl serve`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from tests.trainkit import tiny_stage

pytestmark = pytest.mark.vllm

CAPTIONER = tiny_stage(
    Path("unused"),
    **{
        "budget.steps": 40,
        "optimizer": {"lr": 3.0e-3},
        "batch": {"globalSize": 8, "microSize": 4},
        "checkpoint": {"uri": "pvc://ckpt/captioner"},
    },
)
CAPTIONER["metadata"]["name"] = "captioner"

RECIPE: list[dict[str, Any]] = [
    CAPTIONER,
    {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "CurationRun",
        "metadata": {"name": "recaption"},
        "spec": {
            "input": {"uri": "synthetic://shapes?n=16&seed=5&split=alt&size=96-160"},
            "output": {"uri": "pvc://data/recaptioned", "samplesPerShard": 8},
            "models": [{"name": "captioner", "model": {"stage": "captioner"}, "gpusPerReplica": 0}],
            "steps": [{"recaption": {"model": "captioner", "maxTokens": 32}}],
            "workers": {"parallelism": 1, "concurrency": 4},
        },
    },
    {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "EvalSuite",
        "metadata": {"name": "captioner-eval"},
        "spec": {
            "model": {"stage": "captioner"},
            "benchmarks": ["shapes_vqa", "shapes_count", "shapes_pope"],
            "data": {"uri": "synthetic://shapes?n=12&seed=4"},
            "maxTiles": 2,
            "serving": {"gpusPerReplica": 0},
        },
    },
]


def _run(recipe: Path, workdir: Path, *serving: str) -> None:
    command = [sys.executable, "-m", "sailvl", "run", str(recipe), "--workdir", str(workdir), "--jobs", "2", *serving]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _status(workdir: Path, kind: str, name: str) -> dict[str, Any]:
    state = json.loads((workdir / kind.lower() / name / "state.json").read_text())
    return state["status"]  # type: ignore[no-any-return]


def _captions(workdir: Path) -> dict[str, str]:
    folder = workdir / "pvc" / "data" / "recaptioned"
    return {
        r["id"]: r["text"] for part in sorted(folder.glob("part-*.parquet")) for r in pq.read_table(part).to_pylist()
    }


def test_sailvl_run_with_vllm_scores_and_captions_as_with_sailvl_serve(vllm_cli: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump_all(RECIPE, sort_keys=False))
    _run(recipe, tmp_path / "sailvl")
    # The same stage's export for both: a copy of the run with the served resources forgotten, so they run again
    # (the Succeeded stage is skipped). Two trainings would compare the trainer's reproducibility, not the servers.
    shutil.copytree(tmp_path / "sailvl", tmp_path / "vllm")
    for forgotten in ("curationrun", "evalsuite", "pvc/data"):
        shutil.rmtree(tmp_path / "vllm" / forgotten)
    _run(recipe, tmp_path / "vllm", "--serving", "vllm", "--vllm", str(vllm_cli))

    logs = list((tmp_path / "vllm" / "evalsuite" / "captioner-eval").glob("serve-*.log"))
    argv = next(line for line in logs[0].read_text().splitlines() if line.startswith("$ "))
    assert " serve " in argv and "--dtype float32" in argv and str(vllm_cli) in argv  # a real vLLM, as stored
    by_vllm = _status(tmp_path / "vllm", "EvalSuite", "captioner-eval")
    by_stand_in = _status(tmp_path / "sailvl", "EvalSuite", "captioner-eval")
    assert by_vllm["phase"] == by_stand_in["phase"] == "Succeeded"
    assert by_vllm["results"] == by_stand_in["results"] and by_vllm["average"] == by_stand_in["average"]
    captions = _captions(tmp_path / "vllm")
    assert len(captions) == 16 and captions == _captions(tmp_path / "sailvl")


def test_serving_vllm_without_an_install_is_refused_at_once(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump_all(RECIPE, sort_keys=False))
    command = [sys.executable, "-m", "sailvl", "run", str(recipe), "--workdir", str(tmp_path / "w")]
    done = subprocess.run(
        [*command, "--serving", "vllm", "--vllm", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--serving vllm:" in done.stderr and "nowhere" in done.stderr and "--vllm PATH" in done.stderr
    assert not (tmp_path / "w").exists()
