"""The local runner end to end: the quickstart's own files at a reduced scale, and a run killed mid-stage that
resumes to the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SAILVL = [sys.executable, "-m", "sailvl"]


def _state(workdir: Path, kind: str, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((workdir / kind.lower() / name / "state.json").read_text())


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SAILVL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_reduced_quickstart_runs_every_resource_and_hands_checkpoints_on(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    result = _run(
        ["run", str(REPO / "examples" / "quickstart"), "--workdir", str(workdir), "--scale", "0.02"], tmp_path, 900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    manifests = [
        d for f in sorted((REPO / "examples" / "quickstart").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
    ]
    finals = {}
    for doc in manifests:
        state = _state(workdir, doc["kind"], doc["metadata"]["name"])
        assert state["status"]["phase"] == "Succeeded", (doc["metadata"]["name"], state["status"].get("message"))
        if doc["kind"] == "TrainStage":
            finals[doc["metadata"]["name"]] = state["status"]["checkpoint"]["final"]
            assert Path(finals[doc["metadata"]["name"]], "config.json").exists()
    for doc in manifests:
        if doc["kind"] == "TrainStage" and "init" in doc["spec"]["model"]:
            previous = doc["spec"]["model"]["init"]["stage"]
            resolved = _state(workdir, "TrainStage", doc["metadata"]["name"])["status"]["resolved"]
            assert resolved["init"] == finals[previous], f"{doc['metadata']['name']} did not start from {previous}"
    status = _run(["status", "--workdir", str(workdir)], tmp_path, 60)
    assert status.returncode == 0 and status.stdout.splitlines()[0].split()[:3] == ["NAME", "KIND", "PHASE"]
    report = _run(["report", "--workdir", str(workdir)], tmp_path, 120)
    assert report.returncode == 0, report.stderr
    folder = workdir / "report"
    for name in ("index.html", "report.md", "claims.json", "loss.png", "scores.png", "funnel.png"):
        assert (folder / name).stat().st_size > 0, name
    claims = json.loads((folder / "claims.json").read_text())
    assert set(claims) >= {"curated_beats_raw", "average_rises"}
    # Every suite leaves VLMEvalKit-style predictions and score files and results.json in the workdir, linked.
    report_md = (folder / "report.md").read_text()
    for doc in manifests:
        if doc["kind"] == "EvalSuite":
            results = Path(_state(workdir, "EvalSuite", doc["metadata"]["name"])["local"]["outputs"]["results"])
            summary = json.loads((results / "results.json").read_text())
            for benchmark in doc["spec"]["benchmarks"]:
                assert set(summary["benchmarks"][benchmark]["files"]) <= {p.name for p in results.iterdir()}
                assert any(p.name.endswith(f"_{benchmark}.tsv") for p in results.iterdir()), benchmark
            assert f"- {doc['metadata']['name']}: [results.json](" in report_md


CHAIN = """
apiVersion: sailvl.io/v1alpha1
kind: TrainStage
metadata: {name: first}
spec:
  model: {preset: tiny, maxTiles: 1}
  trainable: [vision, projector, language]
  data:
    template: caption
    maxLength: 192
    mixture:
      - name: reference
        source: {uri: "synthetic://shapes?split=reference&n=256&seed=2&size=112"}
  budget: {steps: 40}
  optimizer: {lr: 2.0e-3}
  batch: {globalSize: 4, microSize: 2}
  precision: fp32
  checkpoint: {uri: "pvc://ckpt/first", intervalSteps: 5}
  seed: 7
---
apiVersion: sailvl.io/v1alpha1
kind: TrainStage
metadata: {name: second}
spec:
  model: {init: {stage: first}, maxTiles: 1}
  trainable: [projector]
  data:
    template: caption
    maxLength: 192
    mixture:
      - name: reference
        source: {uri: "synthetic://shapes?split=reference&n=256&seed=3&size=112"}
  budget: {steps: 10}
  optimizer: {lr: 1.0e-3}
  batch: {globalSize: 4, microSize: 2}
  precision: fp32
  checkpoint: {uri: "pvc://ckpt/second", intervalSteps: 5}
  seed: 8
"""


def _final_losses(workdir: Path) -> dict[str, float]:
    return {name: _state(workdir, "TrainStage", name)["status"]["progress"]["loss"] for name in ("first", "second")}


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_losses(tmp_path: Path) -> None:
    manifest = tmp_path / "chain.yaml"
    manifest.write_text(CHAIN)
    straight = tmp_path / "straight"
    assert _run(["run", str(manifest), "--workdir", str(straight)], tmp_path, 600).returncode == 0

    killed = tmp_path / "killed"
    runner = subprocess.Popen(
        [*SAILVL, "run", str(manifest), "--workdir", str(killed)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = killed / "pvc" / "ckpt" / "first"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("step-*")):  # killed after its first checkpoint, mid-stage
        assert runner.poll() is None and time.monotonic() < deadline, "the first stage ended before it could be killed"
        time.sleep(0.2)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    time.sleep(2)  # the children got SIGTERM when the runner died
    resumed = _run(["run", str(manifest), "--workdir", str(killed)], tmp_path, 600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _final_losses(killed) == _final_losses(straight)
