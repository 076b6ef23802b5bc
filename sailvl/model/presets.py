"""The two architectures a first stage can start from, as transformers `InternVLConfig`s.

`sail-vl-2b` is SAIL-VL-2B: InternViT-300M-448px (24 layers, hidden 1024, 16 heads, MLP 4096, patch 14, qkv bias,
LayerNorm, layer scale) + the 2-layer MLP projector over a 2x2 pixel shuffle (LayerNorm(4096) -> Linear(4096,
1536) -> GELU -> Linear(1536, 1536)) + Qwen2.5-1.5B (28 layers, hidden 1536, MLP 8960, 12 heads, 2 KV heads,
vocabulary 151936, RoPE theta 1e6) with an untied lm_head, as the released checkpoint has: 2.09B parameters.

`tiny` has the same structure at about 1M parameters, 224px tiles (64 tokens each) and the vocabulary of the
tokenizer it is built with (the 1024 tokens of `sailvl.data.tokenizer`): it trains on a laptop CPU in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

from sailvl.data.tiling import DOWNSAMPLE_RATIO, PATCH_SIZE, tokens_per_tile


@dataclass(frozen=True, kw_only=True)
class Preset:
    """An architecture: vision tower and language model settings, and how images become tokens."""

    name: str
    tile_size: int
    vision: dict[str, Any] = field(default_factory=dict)
    """InternVLVisionConfig fields (image_size and patch_size come from tile_size and PATCH_SIZE)."""
    text: dict[str, Any] = field(default_factory=dict)
    """Qwen2Config fields; without vocab_size the vocabulary is the tokenizer's length."""
    tie_word_embeddings: bool = False
    downsample_ratio: float = DOWNSAMPLE_RATIO
    projector_hidden_act: str = "gelu"


PRESETS: dict[str, Preset] = {
    "sail-vl-2b": Preset(
        name="sail-vl-2b",
        tile_size=448,
        vision=dict(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            attention_bias=True,
            use_qk_norm=False,
            norm_type="layer_norm",
            layer_norm_eps=1e-6,
            hidden_act="gelu",
            layer_scale_init_value=0.1,
            use_mean_pooling=True,
        ),
        text=dict(
            vocab_size=151936,
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            hidden_act="silu",
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        ),
    ),
    "tiny": Preset(
        name="tiny",
        tile_size=224,
        vision=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            attention_bias=True,
            norm_type="layer_norm",
            layer_norm_eps=1e-6,
            hidden_act="gelu",
            layer_scale_init_value=0.1,
            use_mean_pooling=True,
        ),
        text=dict(
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            hidden_act="silu",
            max_position_embeddings=8192,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
    ),
}


class PresetError(ValueError):
    """An unknown preset, or settings a preset cannot take."""


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PresetError(f"unknown model preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def side_of(size: int | list[int] | tuple[int, ...]) -> int:
    """The side of a square size as configs store it (an int, or [height, width])."""
    return int(size[0]) if isinstance(size, list | tuple) else int(size)


def vision_config_of(config: InternVLConfig) -> InternVLVisionConfig:
    vision = config.vision_config
    assert isinstance(vision, InternVLVisionConfig), f"an InternVL config holds its vision config; found {vision!r}"
    return vision


def internvl_config(
    vision_config: InternVLVisionConfig,
    text_config: Any,
    *,
    image_token_id: int,
    downsample_ratio: float = DOWNSAMPLE_RATIO,
    projector_hidden_act: str = "gelu",
) -> InternVLConfig:
    """The InternVL config joining a vision tower and a language model; tiles give (side/patch x ratio)^2 tokens."""
    tie = bool(getattr(text_config, "tie_word_embeddings", False))
    return InternVLConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token_id,
        image_seq_length=tokens_per_tile(
            side_of(vision_config.image_size), side_of(vision_config.patch_size), downsample_ratio
        ),
        downsample_ratio=downsample_ratio,
        projector_hidden_act=projector_hidden_act,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=tie,
    )


def preset_config(name: str, *, vocab_size: int, image_token_id: int, tile_size: int | None = None) -> InternVLConfig:
    """The InternVL config of a preset, for a tokenizer of `vocab_size` tokens whose `<IMG_CONTEXT>` is image_token_id.

    A preset with a fixed vocabulary (sail-vl-2b: 151936, Qwen2.5's padded size) keeps it and needs the tokenizer to
    fit in it; one without takes the tokenizer's size. `tile_size` overrides the preset's own tile side.
    """
    preset = get_preset(name)
    side = tile_size if tile_size is not None else preset.tile_size
    tokens_per_tile(side, PATCH_SIZE, preset.downsample_ratio)  # refuses sides that give no whole tokens
    vocab = preset.text.get("vocab_size", vocab_size)
    if vocab_size > vocab:
        raise PresetError(f"preset {name!r} has a vocabulary of {vocab} tokens; the tokenizer has {vocab_size}")
    if not 0 <= image_token_id < vocab:
        raise PresetError(f"image token id must be within the vocabulary of {vocab} tokens; found {image_token_id}")
    vision = InternVLVisionConfig(**preset.vision, image_size=side, patch_size=PATCH_SIZE)
    text = Qwen2Config(**{**preset.text, "vocab_size": vocab}, tie_word_embeddings=preset.tie_word_embeddings)
    return internvl_config(
        vision,
        text,
        image_token_id=image_token_id,
        downsample_ratio=preset.downsample_ratio,
        projector_hidden_act=preset.projector_hidden_act,
    )
