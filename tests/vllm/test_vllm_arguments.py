"""Every argv the operator renders for a vLLM Deployment is one vLLM's own `vllm serve` parser accepts: the example
recipes' servers, and the variations a manifest can ask for (parallelism, length, dtype, load format, extraArgs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sailvl.api import CurationRun, parse_resource
from sailvl_operator.builders.curation import build_curation_children
from sailvl_operator.builders.render import render_paths
from sailvl_operator.builders.train import BuildContext
from tests.manifests import CURATION, mutated
from tests.vllm.conftest import REPO, rendered_command, suite

pytestmark = pytest.mark.vllm
PARSER = Path(__file__).with_name("parse_args.py")


def vllm_verdicts(vllm_cli: Path, argvs: list[list[str]]) -> list[str | None]:
    """vLLM's word on each argv (None: accepted), from its own parser in its own environment."""
    python = vllm_cli.with_name("python")
    done = subprocess.run(
        [str(python), str(PARSER)], input=json.dumps(argvs), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    verdicts: list[str | None] = json.loads(done.stdout)
    return verdicts


def _vllm_commands(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    out = {}
    for obj in objects:
        if obj.get("kind") == "Deployment":
            command = obj["spec"]["template"]["spec"]["containers"][0]["command"]
            if command[0] == "vllm":
                out[obj["metadata"]["name"]] = command
    return out


def _curation_command(serving: dict[str, Any]) -> list[str]:
    run = parse_resource(mutated(CURATION, {"spec.models": [{"name": "captioner", **serving}]}))
    assert isinstance(run, CurationRun)
    ctx = BuildContext(model_uris={"captioner": "pvc://ckpt/captioner/final"}, model_precisions={"captioner": "bf16"})
    return _vllm_commands(build_curation_children(run, ctx))["recaption-vllm-captioner"]


VARIANTS: dict[str, dict[str, Any]] = {
    "stage-model": {"model": {"stage": "captioner"}, "gpusPerReplica": 1},
    "tensor-and-data-parallel": {"model": {"stage": "captioner"}, "gpusPerReplica": 4, "tensorParallelSize": 2},
    "length-and-dtype": {"model": {"stage": "captioner"}, "maxModelLen": 8192, "dtype": "float32"},
    "s3-streamed": {"model": {"uri": "s3://models/qwen2-vl-7b"}},
    "hf-repository": {"model": {"uri": "hf://Qwen/Qwen2.5-VL-7B-Instruct"}, "dtype": "bfloat16"},
    "extra-args": {
        "model": {"stage": "captioner"},
        "extraArgs": ["--gpu-memory-utilization=0.92", "--max-num-seqs", "128", "--enable-prefix-caching"],
    },
    "extra-args-override-dtype": {"model": {"stage": "captioner"}, "extraArgs": ["--dtype=float16"]},
}


def test_every_rendered_vllm_argv_parses_with_vllms_own_parser(vllm_cli: Path) -> None:
    commands: dict[str, list[str]] = {}
    for example in sorted(p for p in (REPO / "examples").iterdir() if p.is_dir()):
        rendered = render_paths([example])
        assert rendered.validation is not None and rendered.validation.ok and not rendered.errors, example
        commands |= {f"{example.name}/{name}": argv for name, argv in _vllm_commands(rendered.objects).items()}
    # The paper recipe's captioner and judge, its evaluated model and judge all run on vLLM.
    assert len(commands) >= 4, sorted(commands)
    commands |= {f"variant/{name}": _curation_command(serving) for name, serving in VARIANTS.items()}
    commands["eval-model-tiling"] = rendered_command(suite({"gpusPerReplica": 1}), Path("/models/final"))
    verdicts = vllm_verdicts(vllm_cli, list(commands.values()))
    refused = {name: verdict for name, verdict in zip(commands, verdicts, strict=True) if verdict is not None}
    assert refused == {}, json.dumps(refused, indent=2)


def test_the_check_refuses_what_vllm_refuses(vllm_cli: Path) -> None:
    """The parser check can fail: arguments vLLM does not take are reported, with vLLM's own message."""
    good = _curation_command(VARIANTS["stage-model"])
    bad = [
        [*good, "--dtype", "float33"],
        [*good, "--mm-processor-kwargs", "{not json"],
        [*good, "--no-such-option"],
        [*good, "--tensor-parallel-size", "two"],
    ]
    verdicts = vllm_verdicts(vllm_cli, [good, *bad])
    assert verdicts[0] is None
    assert all(v is not None for v in verdicts[1:]), verdicts
    assert "float33" in str(verdicts[1]) and "no-such-option" in str(verdicts[3])
