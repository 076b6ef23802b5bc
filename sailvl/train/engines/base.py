"""The `Engine` interface: wrap the model, accumulate micro-batches, step, save and load.

The trainer computes each micro-batch's loss as its share of the step's loss over the whole gang (summed token
losses divided by the gang's target tokens), times the world size. Every engine averages gradients over the
ranks, which cancels that factor, so the update equals one process training on the whole global batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch import nn

from sailvl.api.trainstage import Optimizer


class Engine(ABC):
    """One way of distributing the model; `module` is what the trainer calls forward on."""

    name: str
    module: nn.Module

    @abstractmethod
    def accumulate(self, *, sync: bool) -> AbstractContextManager[None]:
        """Context for one micro-batch's forward and backward; gradients are reduced over ranks only when `sync`
        (the step's last micro-batch)."""

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None: ...

    @abstractmethod
    def set_lr(self, lr: float) -> None: ...

    @abstractmethod
    def step(self) -> float:
        """Clip, update and clear the gradients; returns the global gradient norm before clipping."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the model and optimizer state into `folder` (every rank calls it)."""

    @abstractmethod
    def load(self, folder: Path) -> None:
        """Restore what `save` wrote (every rank calls it)."""

    @abstractmethod
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on rank 0, on CPU (every rank calls it; the others get {})."""

    def prepare(self, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        """The batch on the device; images in the dtype the vision tower's weights have."""
        dtype = next(self.module.parameters()).dtype
        return {
            key: value.to(device, dtype=dtype if value.is_floating_point() and key == "pixel_values" else None)
            for key, value in batch.items()
        }


def parameter_groups(model: nn.Module, optimizer: Optimizer) -> list[dict[str, object]]:
    """AdamW groups: weight decay on matrices only (biases, norms and other vectors decay not), trainable only."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, parameter in _trainable(model):
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters: spec.trainable froze everything")
    return [
        {"params": decay, "weight_decay": optimizer.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, optimizer: Optimizer, *, fused: bool = False) -> torch.optim.AdamW:
    beta1, beta2 = optimizer.betas
    return torch.optim.AdamW(
        parameter_groups(model, optimizer), lr=optimizer.lr, betas=(beta1, beta2), fused=fused or None
    )


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for _, p in _trainable(model)]


def _trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)
