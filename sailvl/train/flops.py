"""Model FLOPs of a training step, from the model's shapes, and model FLOPs utilisation against the device's peak.

Per token, a weight matrix of N parameters costs 2N FLOPs forward, 2N for its own gradient (only if it trains) and
2N for the gradient of its input (only if something before it trains: the gradient must reach that far).
Attention adds 4 x width x context per layer and token forward (QK^T and AV), and twice that backward when the
gradient passes through; context is the token's own sample (a packed row's samples never attend to each other)
and causal masking is not discounted, as MFU is usually quoted. The vision tower runs on each tile's patches (plus
the class token) and the projector on each tile's tokens after the pixel shuffle; recomputation under gradient
checkpointing is not counted (it is not model FLOPs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # this module imports nothing heavy: benchmarks/gpu_step.py uses it with torch alone
    from transformers import InternVLForConditionalGeneration

# Dense peak FLOP/s per GPU (no sparsity): bf16 tensor cores, and fp32 without TF32 (torch's default for matmuls).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H800": {"bf16": 989e12, "fp32": 67e12},
    "GH200": {"bf16": 989e12, "fp32": 67e12},
    "B200": {"bf16": 2250e12, "fp32": 80e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "A800": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "L4": {"bf16": 121e12, "fp32": 30.3e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
}


def peak_flops(device_name: str | None, precision: str) -> float | None:
    """The peak of the device named (e.g. 'NVIDIA H100 80GB HBM3'), or None (a CPU, or a GPU not in the table)."""
    if not device_name:
        return None
    words = device_name.upper().replace("-", " ").split()
    for model in sorted(PEAK_FLOPS, key=len, reverse=True):  # GH200 before H200
        if model in words or any(w.startswith(model) and w[len(model) :].isalpha() for w in words):
            return PEAK_FLOPS[model][precision]
    return None


@dataclass(frozen=True, kw_only=True)
class ModelShapes:
    """What the FLOP count needs from the model: parameter counts, attention widths and depths, what trains."""

    vision_params: int
    projector_params: int
    language_params: int  # embeddings excluded: a lookup, not a matmul
    vision_layers: int
    vision_width: int
    language_layers: int
    language_width: int  # query heads x head size
    patches_per_tile: int  # vision tokens of one tile, class token included
    tokens_per_tile: int
    trainable: frozenset[str]

    @classmethod
    def of(cls, model: InternVLForConditionalGeneration, trainable: Sequence[str]) -> ModelShapes:
        from sailvl.model.components import component_parameters

        config: Any = model.config
        vision, text = config.vision_config, config.text_config
        side = vision.image_size[0] if isinstance(vision.image_size, list | tuple) else vision.image_size
        patch = vision.patch_size[0] if isinstance(vision.patch_size, list | tuple) else vision.patch_size
        embeddings = model.model.language_model.embed_tokens.weight.numel()
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return cls(
            vision_params=sum(p.numel() for p in component_parameters(model, "vision")),
            projector_params=sum(p.numel() for p in component_parameters(model, "projector")),
            language_params=sum(p.numel() for p in component_parameters(model, "language")) - embeddings,
            vision_layers=vision.num_hidden_layers,
            vision_width=vision.hidden_size,
            language_layers=text.num_hidden_layers,
            language_width=text.num_attention_heads * head_dim,
            patches_per_tile=(side // patch) ** 2 + 1,
            tokens_per_tile=int(config.image_seq_length),
            trainable=frozenset(trainable),
        )

    def step_flops(self, *, tokens: int, squares: int, tiles: int) -> float:
        """Model FLOPs of training on samples of `tokens` tokens in all, whose lengths squared sum to `squares`,
        holding `tiles` image tiles."""
        # Per component, in the order the gradient flows back: (parameters, tokens through them, attention cost
        # of one forward in units of width x context x layers).
        parts = {
            "vision": (
                self.vision_params,
                tiles * self.patches_per_tile,
                4 * self.vision_layers * self.vision_width * tiles * self.patches_per_tile**2,
            ),
            "projector": (self.projector_params, tiles * self.tokens_per_tile, 0),
            "language": (self.language_params, tokens, 4 * self.language_layers * self.language_width * squares),
        }
        flops = 0.0
        upstream = False  # does anything before this component train?
        for part, (params, part_tokens, attention) in parts.items():
            trains = part in self.trainable
            matmul = 2 + (2 if trains else 0) + (2 if upstream else 0)
            flops += matmul * params * part_tokens + (3 if trains or upstream else 1) * attention
            upstream = upstream or trains
        return flops
