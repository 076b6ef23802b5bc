"""The process group: torchrun's environment, or a group of one when the trainer runs alone.

A group always exists, so every engine (DDP, FSDP2, DeepSpeed) and every collective below runs the same code in a
single process as in a gang. CPU runs use gloo, GPU runs nccl with one device per local rank.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sailvl.train.settings import SpecError

# A checkpoint save of a large model on a slow volume can keep the other ranks waiting at a barrier.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks, in float64 (token counts stay exact far beyond 2**53 / world)."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def all_reduce_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the ranks (in place)."""
        dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(*, gpus: bool, env: Mapping[str, str] = os.environ) -> Distributed:
    """Join torchrun's group (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or make a group of one."""
    if gpus and not torch.cuda.is_available():
        raise RuntimeError("spec.runtime.gpusPerNode asks for GPUs but CUDA is not available on this node")
    rank, world_size, local_rank = (
        _int(env, key, default) for key, default in [("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)]
    )
    if not 0 <= rank < world_size:
        raise SpecError(f"RANK must be in [0, WORLD_SIZE={world_size}); found {rank}")
    if gpus:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = "nccl" if gpus else "gloo"
    if not dist.is_initialized():
        if "WORLD_SIZE" in env:
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        else:
            store = dist.HashStore()  # type: ignore[attr-defined]
            dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=COLLECTIVE_TIMEOUT)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise SpecError(f"{key} must be a non-negative integer (torchrun sets it); found {value!r}")
    return int(value)
