"""DeepSpeed ZeRO 0-3, configured from the spec (`deepspeed_config`); imported only when a stage asks for it.

DeepSpeed counts micro-batches itself and updates the weights inside the `step()` of the last one, so this engine's
`backward` runs DeepSpeed's backward and micro-step, and `step` only reports the gradient norm. The learning rate
is therefore set before the step's first micro-batch, as the trainer does for every engine.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sailvl.api.trainstage import TrainStageSpec
from sailvl.train.distributed import Distributed
from sailvl.train.engines.base import Engine, build_optimizer
from sailvl.train.engines.deepspeed_config import deepspeed_config

STATE_TAG = "deepspeed"  # the sub-folder of a step checkpoint DeepSpeed writes into


class DeepSpeedEngine(Engine):
    name = "deepspeed"

    def __init__(self, spec: TrainStageSpec, model: nn.Module, dist: Distributed, *, bf16: bool) -> None:
        # DeepSpeed insists on LOCAL_RANK even when it joins a process group that already exists (a single process).
        os.environ.setdefault("LOCAL_RANK", str(dist.local_rank))
        import deepspeed  # type: ignore[import-untyped]

        accumulation = spec.batch.global_size // (spec.batch.micro_size * dist.world_size)
        self.config = deepspeed_config(
            spec, world_size=dist.world_size, accumulation=accumulation, bf16=bf16, gpu=dist.device.type == "cuda"
        )
        self.stage = int(self.config["zero_optimization"]["stage"])
        self.dist = dist
        model.to(dist.device)
        optimizer = build_optimizer(model, spec.optimizer)
        engine, *_ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=self.config, dist_init_required=False
        )
        self.engine: Any = engine
        self.module = engine

    def accumulate(self, *, sync: bool) -> AbstractContextManager[None]:
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        # The trainer's loss is already each micro-batch's share of the step: no division by the accumulation.
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()

    def set_lr(self, lr: float) -> None:
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> float:
        assert self.engine.micro_steps % self.engine.gradient_accumulation_steps() == 0, (
            "DeepSpeed's micro-step count is out of step with the trainer's"
        )
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag=STATE_TAG, save_latest=False)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag=STATE_TAG, load_lr_scheduler_states=False)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load its state from {folder / STATE_TAG}")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        if self.stage == 3:
            state = self.engine._zero3_consolidated_16bit_state_dict()  # gathers the partitions on rank 0
            return dict(state) if self.dist.is_main and state is not None else {}
        if not self.dist.is_main:
            return {}
        return {k: v.detach().to("cpu", copy=True) for k, v in self.engine.module.state_dict().items()}
