"""Training throughput of the tiny preset: packed against padded batches, the same data, the same trainer.

Both runs train the stage trainer (`sailvl.train.trainer.train`, DDP engine, one process) on the same SFT
conversations of mixed lengths (`synthetic://shapes` split sft-instruction: 52 to 281 tokens, 129 on average with
56px tiles) for the same number of samples. Padded: 8 samples a step, each padded to the longest of its batch.
Packed: 2 rows of 512 tokens a step, samples packed best-fit with a block-diagonal mask. Samples/s and tokens/s
(real tokens, padding excluded) are measured from each run's own step timings, the first step (warm-up) left
out; the two runs alternate `--rounds` times so drift in the machine's speed falls on both.

Run: `python benchmarks/train_step.py [--samples N] [--rounds R]`. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from sailvl.api.manifest import parse_resource
from sailvl.api.trainstage import TrainStage
from sailvl.train.reporting import read_history
from sailvl.train.settings import TrainerSettings
from sailvl.train.trainer import train

DATA = "synthetic://shapes?n=2048&seed=11&split=sft-instruction&size=96-160"
SHAPES = {
    "padded": {"packing": False, "maxLength": 512, "globalSize": 8, "microSize": 8},
    "packed": {"packing": True, "maxLength": 512, "globalSize": 2, "microSize": 2},
}


def stage(name: str, samples: int, checkpoints: Path) -> TrainStage:
    shape = SHAPES[name]
    doc: dict[str, Any] = {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "TrainStage",
        "metadata": {"name": f"bench-{name}"},
        "spec": {
            "model": {"preset": "tiny", "maxTiles": 2, "tileSize": 56},
            "trainable": ["vision", "projector", "language"],
            "data": {
                "template": "chat",
                "maxLength": shape["maxLength"],
                "packing": shape["packing"],
                "mixture": [{"name": "sft", "source": {"uri": DATA}}],
            },
            "budget": {"samples": samples},
            "optimizer": {"lr": 1.0e-3},
            "batch": {"globalSize": shape["globalSize"], "microSize": shape["microSize"]},
            "precision": "fp32",
            "checkpoint": {"uri": str(checkpoints), "intervalSteps": 1_000_000, "keep": 1},
        },
    }
    resource = parse_resource(doc)
    assert isinstance(resource, TrainStage)
    return resource


def measure(name: str, samples: int, folder: Path) -> dict[str, float]:
    checkpoints = folder / name
    train(stage(name, samples, checkpoints), TrainerSettings(metrics_port=None))
    history = read_history(checkpoints)
    timed = history[1:]  # the first step pays for warm-up
    seconds = sum(h["seconds"] for h in timed)
    done_samples = history[-1]["samples"] - history[0]["samples"]
    done_tokens = history[-1]["tokens"] - history[0]["tokens"]
    return {"steps": len(history), "samples": done_samples, "tokens": done_tokens, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=160, help="samples each run trains on (default 160)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two runs (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    totals = {name: {"samples": 0.0, "tokens": 0.0, "seconds": 0.0} for name in SHAPES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in SHAPES:
                figures = measure(name, args.samples, Path(tmp) / f"round-{round_}")
                for key in totals[name]:
                    totals[name][key] += figures[key]
                print(
                    f"round {round_ + 1} {name:>6}: {figures['steps']} steps, {figures['samples']} samples, "
                    f"{figures['tokens']} tokens in {figures['seconds']:.1f}s",
                    flush=True,
                )
    result: dict[str, float] = {}
    for name, total in totals.items():
        result[f"{name}_samples_per_second"] = round(total["samples"] / total["seconds"], 2)
        result[f"{name}_tokens_per_second"] = round(total["tokens"] / total["seconds"], 1)
        samples_per_second, tokens_per_second = (
            result[f"{name}_samples_per_second"],
            result[f"{name}_tokens_per_second"],
        )
        print(f"{name:>6}: {samples_per_second} samples/s, {tokens_per_second} tokens/s")
    result["packed_vs_padded_ratio"] = round(
        result["packed_samples_per_second"] / result["padded_samples_per_second"], 3
    )
    result["packed_vs_padded_tokens_ratio"] = round(
        result["packed_tokens_per_second"] / result["padded_tokens_per_second"], 3
    )
    print(f"packed / padded: {result['packed_vs_padded_ratio']}x samples/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
