"""The DeepSpeed configuration a TrainStage amounts to (pure: importable and testable without DeepSpeed).

The optimizer is AdamW built from `spec.optimizer` and handed to DeepSpeed as a client optimizer, and the learning
rate is set each step by the trainer's schedule; so the config has no `optimizer` or `scheduler` section and needs
none of DeepSpeed's compiled optimizer kernels.
"""

from __future__ import annotations

from typing import Any

from sailvl.api.trainstage import TrainStageSpec

DEFAULT_ZERO_STAGE = 2


def deepspeed_config(
    spec: TrainStageSpec, *, world_size: int, accumulation: int, bf16: bool, gpu: bool
) -> dict[str, Any]:
    stage = spec.parallelism.zero_stage if spec.parallelism.zero_stage is not None else DEFAULT_ZERO_STAGE
    zero: dict[str, Any] = {"stage": stage, "contiguous_gradients": True, "overlap_comm": gpu}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_batch_size": spec.batch.micro_size * accumulation * world_size,
        "train_micro_batch_size_per_gpu": spec.batch.micro_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": spec.optimizer.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # the trainer reports progress itself
        "wall_clock_breakdown": False,
    }
