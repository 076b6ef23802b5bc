"""Training step throughput of SAIL-VL-2B on one GPU node: tokens/s per GPU and model FLOPs utilisation.

The SAIL-VL-2B architecture (InternViT-300M-448px + MLP projector + Qwen2.5-1.5B, 2.09B parameters) with random
weights, built by transformers' `InternVLForConditionalGeneration`, trains on random sequences of `--seq` tokens,
each holding `--tiles` 448px image tiles (256 tokens each in the language model, 1025 patches each in the vision
tower), everything trainable, as the trainer does it: the loss summed over target tokens, AdamW, gradient clipping,
bf16. Attention is torch's SDPA restricted to its flash kernel (`--sdpa flash`; `auto` lets torch choose); no
attention mask is passed, so the language model runs causal flash attention and the vision tower full attention.

Engines: `ddp` (fp32 weights under bf16 autocast), `fsdp` (FSDP2 `fully_shard` per decoder layer, bf16 compute,
fp32 reduction), `deepspeed` (ZeRO-2, bf16; only where its wheel is installed). Model FLOPs count 6N per token plus
attention (`sailvl.train.flops`, which needs nothing but the standard library); the peak is the device's dense bf16
figure from the same module.

This file needs only torch and transformers (it runs where sailvl's other dependencies are missing); the
architecture numbers below are checked against `sailvl.model.presets` by tests/test_train_units.py.

Run under torchrun: `torchrun --standalone --nproc-per-node=1 benchmarks/gpu_step.py --engine fsdp`.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sailvl.train.flops import ModelShapes, peak_flops  # imports the standard library only

# SAIL-VL-2B as sailvl.model.presets defines it (tests/test_train_units.py keeps the two equal).
VISION = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, attention_bias=True,
    use_qk_norm=False, norm_type="layer_norm", layer_norm_eps=1e-6, hidden_act="gelu", layer_scale_init_value=0.1,
    use_mean_pooling=True, image_size=448, patch_size=14,
)  # fmt: skip
TEXT = dict(
    vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, tie_word_embeddings=False,
)  # fmt: skip
IMAGE_TOKEN_ID = 151667
TOKENS_PER_TILE = 256
IGNORE_INDEX = -100


def sail_vl_2b_config() -> Any:
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    return InternVLConfig(
        vision_config=InternVLVisionConfig(**VISION),
        text_config=Qwen2Config(**TEXT),
        image_token_id=IMAGE_TOKEN_ID,
        image_seq_length=TOKENS_PER_TILE,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def shapes(model: Any) -> ModelShapes:
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    inner, text = model.model, model.config.text_config
    embeddings = inner.language_model.embed_tokens.weight.numel()  # a lookup, not a matmul
    return ModelShapes(
        vision_params=count(inner.vision_tower),
        projector_params=count(inner.multi_modal_projector),
        language_params=count(inner.language_model) + count(model.lm_head) - embeddings,
        vision_layers=VISION["num_hidden_layers"],
        vision_width=VISION["hidden_size"],
        language_layers=text.num_hidden_layers,
        language_width=text.hidden_size,
        patches_per_tile=(VISION["image_size"] // VISION["patch_size"]) ** 2 + 1,
        tokens_per_tile=TOKENS_PER_TILE,
        trainable=frozenset({"vision", "projector", "language"}),
    )  # fmt: skip


def batch(
    micro: int, seq: int, tiles: int, device: torch.device, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random text with `tiles` tiles' image tokens after a short prompt; the image span carries no loss."""
    ids = torch.randint(0, 151643, (micro, seq), generator=generator)
    start = 16
    ids[:, start : start + tiles * TOKENS_PER_TILE] = IMAGE_TOKEN_ID
    labels = ids.clone()
    labels[:, : start + tiles * TOKENS_PER_TILE] = IGNORE_INDEX
    pixels = torch.randn(micro * tiles, 3, 448, 448, generator=generator)
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "pixel_values": pixels.to(device, torch.bfloat16),
    }


def wrap(engine: str, model: Any, device: torch.device, lr: float, micro: int) -> tuple[Any, Any, Any]:
    """(module to call, optimizer-like with .step(), backward function)."""
    if engine == "ddp":
        module = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
        return module, optimizer, lambda loss: loss.backward()
    if engine == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for layer in model.model.language_model.layers:
            fully_shard(layer, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
        return model, optimizer, lambda loss: loss.backward()
    import deepspeed  # type: ignore[import-untyped]

    config = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro * dist.get_world_size(),
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    engine_, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config, dist_init_required=False)
    return engine_, engine_, lambda loss: engine_.backward(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["ddp", "fsdp", "deepspeed"], default="fsdp")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--tiles", type=int, default=7, help="image tiles per sequence (6 + thumbnail)")
    parser.add_argument("--micro", type=int, default=1)
    parser.add_argument("--sdpa", choices=["flash", "auto"], default="flash")
    args = parser.parse_args()

    dist.init_process_group("nccl")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    torch.manual_seed(0)
    from transformers import InternVLForConditionalGeneration

    with device:
        model = InternVLForConditionalGeneration._from_config(sail_vl_2b_config(), attn_implementation="sdpa")
    if args.engine == "deepspeed":
        model = model.to(torch.bfloat16)
    counts = shapes(model)
    module, optimizer, backward = wrap(args.engine, model, device, lr=1e-5, micro=args.micro)
    generator = torch.Generator().manual_seed(dist.get_rank())
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def step_context() -> contextlib.ExitStack:
        # A fresh context per step: sdpa_kernel() is a generator context manager, which can be entered only once.
        stack = contextlib.ExitStack()
        if args.sdpa == "flash":
            stack.enter_context(sdpa_kernel([SDPBackend.FLASH_ATTENTION]))
        if args.engine == "ddp":
            stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
        return stack

    timed, losses = 0.0, []
    torch.cuda.reset_peak_memory_stats(device)
    for step in range(args.steps):
        inputs = batch(args.micro, args.seq, args.tiles, device, generator)
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        with step_context():
            labels = inputs.pop("labels")
            logits = module(**inputs, use_cache=False).logits
            targets = labels[:, 1:]
            summed = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="sum")
            loss = summed / (targets != IGNORE_INDEX).sum()
        backward(loss)
        if args.engine != "deepspeed":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if args.engine != "deepspeed":
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        if step >= args.warmup:
            timed += time.perf_counter() - started
        losses.append(float(loss.detach()))
    steps = args.steps - args.warmup
    tokens = args.micro * args.seq
    flops = counts.step_flops(tokens=tokens, squares=args.micro * args.seq**2, tiles=args.micro * args.tiles)
    name = torch.cuda.get_device_name(device)
    peak = peak_flops(name, "bf16")
    result = {
        "engine": args.engine,
        "device": name,
        "seq": args.seq,
        "micro": args.micro,
        "tiles": args.tiles,
        "sdpa": args.sdpa,
        "parameters": counts.vision_params + counts.projector_params + counts.language_params,
        "step_seconds": round(timed / steps, 4),
        "tokens_per_second_per_gpu": round(tokens * steps / timed, 1),
        "mfu": round(flops * steps / timed / peak, 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "finite": all(math.isfinite(x) for x in losses),
    }
    if dist.get_rank() == 0:
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "unknown peak"
        print(
            f"{args.engine}: {result['step_seconds']}s/step, {result['tokens_per_second_per_gpu']} tokens/s/GPU, "
            f"MFU {mfu}, peak memory {result['peak_memory_gib']} GiB, "
            f"loss {result['loss_first']} -> {result['loss_last']}"
        )
        print(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
