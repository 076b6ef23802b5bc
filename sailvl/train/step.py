"""One optimizer step over the gang: the loss as a sum over target tokens, gradient accumulation, the update.

The step's loss is the mean token loss over every target token of the global batch (all micro-batches of all
ranks), so it does not depend on how the batch is split into micro-batches and processes: each micro-batch
contributes its summed token losses divided by the gang's target-token count, known before the first forward.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sailvl.data.tokens import IGNORE_INDEX
from sailvl.train.data import StepBatch
from sailvl.train.distributed import Distributed
from sailvl.train.engines.base import Engine
from sailvl.train.settings import LossNotFinite


@dataclass(frozen=True, kw_only=True)
class StepTotals:
    """The step's batch over the whole gang."""

    samples: int
    tokens: int
    targets: int
    squares: int
    tiles: int

    @classmethod
    def gather(cls, batch: StepBatch, dist: Distributed) -> StepTotals:
        local = [batch.samples, batch.tokens, batch.targets, sum(n * n for n in batch.lengths), batch.tiles]
        samples, tokens, targets, squares, tiles = (int(v) for v in dist.all_reduce_sum(local))
        return cls(samples=samples, tokens=tokens, targets=targets, squares=squares, tiles=tiles)


def token_loss_sum(module: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy of every target token: position t predicts label t+1."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = module(**inputs, use_cache=False).logits
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def train_step(
    engine: Engine,
    batch: StepBatch,
    totals: StepTotals,
    dist: Distributed,
    *,
    step: int,
    lr: float,
    bf16: bool,
) -> tuple[float, float]:
    """Train on `batch` (this rank's micro-batches); returns the gang's mean token loss and the gradient norm.

    The loss is checked before the last micro-batch's backward, so a non-finite loss never reaches the weights.
    """
    engine.set_lr(lr)
    scale = dist.world_size / max(totals.targets, 1)  # the engines average gradients over the ranks
    summed = torch.zeros((), dtype=torch.float64, device=dist.device)  # no host sync until the last micro-batch
    loss = math.nan
    last = len(batch.micro_batches) - 1
    for i, micro in enumerate(batch.micro_batches):
        inputs = engine.prepare(micro, dist.device)
        with engine.accumulate(sync=i == last):
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with autocast:
                micro_sum = token_loss_sum(engine.module, inputs)
            summed += micro_sum.detach().double()
            if i == last:
                loss = dist.all_reduce_tensor(summed).item() / max(totals.targets, 1)
                if not math.isfinite(loss):
                    raise LossNotFinite(step, loss)
            engine.backward(micro_sum * scale)
    return loss, engine.step()
