"""PyTorch's own engines: DDP (replicated weights) and FSDP2 (`fully_shard`, weights sharded per layer).

Both save the same files: the full model and the full optimizer state keyed by parameter name, gathered on rank 0
(`torch.distributed.checkpoint.state_dict`), so a stage can resume under the other engine or another world size.

FSDP2 shards each decoder layer of the language model as its own unit and the rest (vision tower, projector,
embeddings, lm_head) as the root unit. The root is gathered at every forward, so a rank whose micro-batch has no
image (and skips the vision tower) still joins the same collectives as the others; sharding vision layers one by
one would leave the ranks waiting on each other whenever only some of them see images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from sailvl.api.trainstage import TrainStageSpec
from sailvl.model.components import component_modules
from sailvl.train.distributed import Distributed
from sailvl.train.engines.base import Engine, build_optimizer, trainable_parameters

MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
_SCATTER = StateDictOptions(full_state_dict=True)


class _NativeEngine(Engine):
    """What DDP and FSDP2 share: the optimizer, clipping and the full-state checkpoint files."""

    def __init__(self, spec: TrainStageSpec, model: nn.Module, dist: Distributed) -> None:
        self.model, self.dist = model, dist
        self.grad_clip = spec.optimizer.grad_clip
        self.optimizer = build_optimizer(model, spec.optimizer, fused=dist.device.type == "cuda")
        self.parameters = trainable_parameters(model)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()  # type: ignore[no-untyped-call]

    def step(self) -> float:
        norm: Any = torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip if self.grad_clip > 0 else math.inf)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
            norm = norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def save(self, folder: Path) -> None:
        model_state = get_model_state_dict(self.model, options=_GATHER)
        optimizer_state = get_optimizer_state_dict(self.model, self.optimizer, options=_GATHER)
        if self.dist.is_main:
            torch.save(model_state, folder / MODEL_FILE)
            torch.save(optimizer_state, folder / OPTIMIZER_FILE)

    def load(self, folder: Path) -> None:
        model_state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True, mmap=True)
        set_model_state_dict(self.model, model_state, options=_SCATTER)
        optimizer_state = torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True, mmap=True)
        set_optimizer_state_dict(self.model, self.optimizer, optimizer_state, options=_SCATTER)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        state = get_model_state_dict(self.model, options=_GATHER)
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if self.dist.is_main else {}


class DdpEngine(_NativeEngine):
    name = "ddp"

    def __init__(self, spec: TrainStageSpec, model: nn.Module, dist: Distributed, *, bf16: bool) -> None:
        model.to(dist.device)
        super().__init__(spec, model, dist)
        # The vision tower and projector sit idle in a micro-batch without images; DDP must then look for
        # parameters that got no gradient instead of waiting for them.
        self.module = DistributedDataParallel(
            model,
            device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            find_unused_parameters=bool({"vision", "projector"} & set(spec.trainable)),
        )

    def accumulate(self, *, sync: bool) -> AbstractContextManager[None]:
        assert isinstance(self.module, DistributedDataParallel)
        return nullcontext() if sync else self.module.no_sync()


class FsdpEngine(_NativeEngine):
    name = "fsdp"

    def __init__(self, spec: TrainStageSpec, model: nn.Module, dist: Distributed, *, bf16: bool) -> None:
        model.to(dist.device)
        mesh = init_device_mesh(dist.device.type, (dist.world_size,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
        kwargs: dict[str, Any] = {"mesh": mesh, **({"mp_policy": policy} if policy is not None else {})}
        layer_types = set(getattr(model, "_no_split_modules", None) or ())
        language = component_modules(model)["language"][0]  # type: ignore[arg-type]
        for layer in language.modules():
            if type(layer).__name__ in layer_types:
                fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        super().__init__(spec, model, dist)
        self.module = model

    def accumulate(self, *, sync: bool) -> AbstractContextManager[None]:
        return self._sync(sync)

    @contextmanager
    def _sync(self, sync: bool) -> Iterator[None]:
        assert isinstance(self.module, FSDPModule)
        self.module.set_requires_gradient_sync(sync)
        try:
            yield
        finally:
            self.module.set_requires_gradient_sync(True)
