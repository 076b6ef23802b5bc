"""Helpers of the trainer tests: tiny TrainStages, runs in this process or as real processes, and their outputs."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from sailvl.api.manifest import parse_resource
from sailvl.api.trainstage import TrainStage
from sailvl.train.reporting import read_history
from sailvl.train.settings import TrainerSettings
from sailvl.train.trainer import TrainResult, train

REPO = Path(__file__).resolve().parent.parent
# Small images and 56px tiles (4 tokens each): a step of the tiny preset takes a fraction of a second on a CPU.
CAPTIONS = "synthetic://shapes?n=256&seed=0&split=reference&size=96-128"
CHATS = "synthetic://shapes?n=256&seed=1&split=sft-knowledge&size=96-128"


def tiny_stage(checkpoints: Path, **overrides: Any) -> dict[str, Any]:
    """A TrainStage manifest of the tiny preset; `overrides` maps dotted spec paths to values."""
    doc: dict[str, Any] = {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "TrainStage",
        "metadata": {"name": "tiny"},
        "spec": {
            "model": {"preset": "tiny", "maxTiles": 2, "tileSize": 56},
            "trainable": ["vision", "projector", "language"],
            "data": {
                "template": "caption",
                "maxLength": 96,
                "mixture": [{"name": "captions", "source": {"uri": CAPTIONS}}],
            },
            "budget": {"steps": 6},
            "optimizer": {"lr": 2.0e-3, "minLr": 1.0e-4, "warmupRatio": 0.2},
            "batch": {"globalSize": 4, "microSize": 1},
            "precision": "fp32",
            "checkpoint": {"uri": str(checkpoints), "intervalSteps": 3, "keep": 2},
            "seed": 7,
        },
    }
    for path, value in overrides.items():
        node = doc["spec"]
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = copy.deepcopy(value)
    return doc


def write_spec(folder: Path, doc: dict[str, Any], name: str = "stage.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_here(doc: dict[str, Any], **settings: Any) -> TrainResult:
    """Train in this process (a process group of one)."""
    stage = parse_resource(doc)
    assert isinstance(stage, TrainStage)
    return train(stage, TrainerSettings(metrics_port=None, **settings))


def trainer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAILVL_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update(SAILVL_METRICS_PORT="off", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


def python_train(spec: Path) -> list[str]:
    return [sys.executable, "-m", "sailvl.train", "--spec", str(spec)]


def torchrun(spec: Path, processes: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", "sailvl.train", "--spec", str(spec),
    ]  # fmt: skip


def run_process(command: list[str], *, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, env=trainer_env(**env), capture_output=True, text=True, timeout=timeout)


def kill_when(command: list[str], ready: Any, *, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """Start `command`, SIGKILL it and every process it started (as a pod's end does) as soon as `ready()` is
    true; fails if it ends on its own first."""
    process = subprocess.Popen(
        command, cwd=REPO, env=trainer_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the trainer ended (exit {process.returncode}) before it could be killed:\n{out}")
        if time.monotonic() > deadline:
            _kill_tree(process.pid)
            raise AssertionError("the trainer never reached the point to kill it at")
        time.sleep(0.02)
    _kill_tree(process.pid)
    out, _ = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, out, "")


def _kill_tree(pid: int) -> None:
    """SIGKILL `pid` and its descendants (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, queue = [], [pid]
    while queue:
        current = queue.pop()
        doomed.append(current)
        queue += children.get(current, [])
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def losses(checkpoints: Path) -> list[float]:
    history = read_history(checkpoints)
    assert [h["step"] for h in history] == list(range(1, len(history) + 1)), "history must list every step once"
    return [h["loss"] for h in history]


def final_weights(checkpoints: Path) -> dict[str, torch.Tensor]:
    """The exported model's weights as transformers loads them (named as in the model's state dict)."""
    from transformers import InternVLForConditionalGeneration

    return InternVLForConditionalGeneration.from_pretrained(checkpoints / "final").state_dict()


def step_weights(checkpoints: Path, step: int) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(checkpoints / f"step-{step}" / "model.pt", weights_only=True)
    return state


def latest(checkpoints: Path) -> str | None:
    path = checkpoints / "latest"
    return path.read_text().strip() if path.is_file() else None


def termination(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result
