"""Distribution engines behind one small interface: the model never knows which one wraps it."""

from __future__ import annotations

from torch import nn

from sailvl.api.trainstage import TrainStageSpec
from sailvl.train.distributed import Distributed
from sailvl.train.engines.base import Engine


def build_engine(spec: TrainStageSpec, model: nn.Module, dist: Distributed, *, bf16: bool) -> Engine:
    """The engine `spec.parallelism.engine` names, wrapping `model` (already frozen per `trainable`)."""
    engine = spec.parallelism.engine
    if engine == "deepspeed":
        from sailvl.train.engines.deepspeed import DeepSpeedEngine

        return DeepSpeedEngine(spec, model, dist, bf16=bf16)
    from sailvl.train.engines.native import DdpEngine, FsdpEngine

    if engine == "fsdp":
        return FsdpEngine(spec, model, dist, bf16=bf16)
    if engine == "ddp":
        return DdpEngine(spec, model, dist, bf16=bf16)
    raise ValueError(f"spec.parallelism.engine must be ddp, fsdp or deepspeed; found {engine!r}")


__all__ = ["Engine", "build_engine"]
