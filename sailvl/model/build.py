"""Build the InternVL model a TrainStage starts from: a preset, a preset assembled from component checkpoints, or
an InternVL checkpoint (`init`).

- A preset alone gives random weights (seeded) and the project's tokenizer (`sailvl.data.tokenizer`), which
  already has the ChatML and image tokens.
- A preset with `vision` and `language` checkpoints takes the vision tower (an `InternVLVisionModel` folder) and the
  language model (a causal LM folder with its tokenizer, Qwen2 for SAIL-VL) as saved, adds the image tokens to the
  tokenizer (new embedding rows = the mean embedding) and initialises the projector afresh. The sizes are the
  checkpoints'; the preset contributes the pixel shuffle, the projector's activation and whether the lm_head is
  tied to the embeddings (a tied language model is untied for a preset that is not, as sail-vl-2b).
- `init` loads a Hugging Face InternVL checkpoint folder, as `export_checkpoint` writes and transformers reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    InternVLForConditionalGeneration,
    InternVLVisionModel,
    PreTrainedTokenizerBase,
)
from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

from sailvl.api.trainstage import ModelSpec
from sailvl.data.chat import with_chat_template
from sailvl.data.tiling import Tiler
from sailvl.data.tokens import END_OF_TEXT, IMG_CONTEXT
from sailvl.data.uris import PvcRoot, local_folder
from sailvl.model.checkpoint import BuiltModel, ModelLoadError, load_checkpoint, read_model_type
from sailvl.model.components import check_every_parameter_assigned
from sailvl.model.presets import get_preset, internvl_config, preset_config, side_of, vision_config_of
from sailvl.model.vocab import grow_embeddings, load_tokenizer_with_image_tokens, output_embeddings, untie_embeddings


def build_model(
    spec: ModelSpec,
    *,
    init_uri: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    pvc_root: PvcRoot = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    seed: int | None = None,
) -> BuiltModel:
    """The model, tokenizer and tiler a stage starts from, as its ModelSpec says.

    `init_uri` is the checkpoint an `init: {stage: ...}` reference resolved to (the caller resolves stages);
    `tokenizer` replaces the project's tokenizer for a preset without a language checkpoint; `device="meta"` builds
    a preset without allocating weights (to count parameters); `seed` makes random initialisation reproducible
    without touching the global random state.

    Whatever the source, the tokenizer gets sailvl's chat template (`sailvl.data.chat`): every model sailvl trains
    and exports speaks one prompt layout, the one vLLM's InternVL processor expects.
    """
    built = _build(
        spec, init_uri=init_uri, tokenizer=tokenizer, pvc_root=pvc_root, dtype=dtype, device=device, seed=seed
    )
    with_chat_template(built.tokenizer)
    return built


def _build(
    spec: ModelSpec,
    *,
    init_uri: str | None,
    tokenizer: PreTrainedTokenizerBase | None,
    pvc_root: PvcRoot,
    dtype: torch.dtype,
    device: str | torch.device | None,
    seed: int | None,
) -> BuiltModel:
    if spec.init is not None:
        uri = init_uri or spec.init.uri
        if uri is None:
            raise ModelLoadError(
                f"model.init names stage {spec.init.stage!r}: resolve it to that stage's final checkpoint URI and "
                "pass it as init_uri"
            )
        _refuse_meta(device, "loading a checkpoint")
        return load_checkpoint(local_folder(uri, pvc_root), max_tiles=spec.max_tiles, dtype=dtype, source=uri)
    assert spec.preset is not None  # ModelSpec guarantees exactly one of init, preset
    if (spec.vision is None) != (spec.language is None):
        given, missing = ("vision", "language") if spec.vision is not None else ("language", "vision")
        raise ModelLoadError(
            f"model.{given} is set but model.{missing} is not: assembling a preset needs both component checkpoints"
        )
    if spec.vision is not None and spec.language is not None:
        _refuse_meta(device, "assembling from checkpoints")
        return assemble(
            spec.preset,
            vision_dir=local_folder(spec.vision.uri, pvc_root),
            language_dir=local_folder(spec.language.uri, pvc_root),
            tile_size=spec.tile_size,
            max_tiles=spec.max_tiles,
            dtype=dtype,
            seed=seed,
            source=f"preset:{spec.preset} vision:{spec.vision.uri} language:{spec.language.uri}",
        )
    return build_preset(
        spec.preset,
        tokenizer=tokenizer,
        tile_size=spec.tile_size,
        max_tiles=spec.max_tiles,
        dtype=dtype,
        device=device,
        seed=seed,
    )


def build_preset(
    name: str,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    tile_size: int | None = None,
    max_tiles: int = 6,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    seed: int | None = None,
) -> BuiltModel:
    """A preset with random weights; the tokenizer defaults to the project's tiny byte-level BPE."""
    if tokenizer is None:
        from sailvl.data.tokenizer import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
    image_token_id = _image_token_id(tokenizer, f"the tokenizer for preset {name!r}")
    config = preset_config(name, vocab_size=len(tokenizer), image_token_id=image_token_id, tile_size=tile_size)
    with _seeded(seed), torch.device(device) if device is not None else nullcontext():
        model = InternVLForConditionalGeneration(config)
    nn.Module.to(model, dtype=dtype)  # in place (transformers' own `to` wrapper confuses type checkers)
    check_every_parameter_assigned(model)
    _set_generation_tokens(model, tokenizer)
    tiler = Tiler(tile_size=side_of(vision_config_of(config).image_size), max_tiles=max_tiles)
    return BuiltModel(model=model, tokenizer=tokenizer, tiler=tiler, source=f"preset:{name}")


def assemble(
    name: str,
    *,
    vision_dir: Path,
    language_dir: Path,
    tile_size: int | None = None,
    max_tiles: int = 6,
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
    source: str = "",
) -> BuiltModel:
    """A preset's structure from a vision tower checkpoint and a language model checkpoint; a fresh projector."""
    preset = get_preset(name)
    vision_type, language_type = read_model_type(vision_dir), read_model_type(language_dir)
    if vision_type != "internvl_vision":
        raise ModelLoadError(
            f"the vision checkpoint {vision_dir} must be an InternVLVisionModel (config model_type 'internvl_vision'); "
            f"found model_type {vision_type!r}"
        )
    vision = InternVLVisionModel.from_pretrained(vision_dir, dtype=dtype)
    side = side_of(vision.config.image_size)
    if tile_size is not None and tile_size != side:
        raise ModelLoadError(
            f"model.tileSize is {tile_size} but the vision checkpoint {vision_dir} was trained on {side}px tiles "
            "(its position embeddings fix the size): leave tileSize unset or match it"
        )
    try:
        tokenizer, known, added = load_tokenizer_with_image_tokens(language_dir)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"the language checkpoint {language_dir} needs its tokenizer files: {err}") from err
    llm = AutoModelForCausalLM.from_pretrained(language_dir, dtype=dtype)
    if output_embeddings(llm) is None or not hasattr(llm, llm.base_model_prefix):
        raise ModelLoadError(f"the language checkpoint {language_dir} ({language_type}) is not a causal language model")
    if not preset.tie_word_embeddings:
        untie_embeddings(llm)  # Qwen2.5-1.5B ties them; SAIL-VL-2B trains a separate lm_head, starting as a copy
    grow_embeddings(llm, len(tokenizer), known, added)

    config = internvl_config(
        vision.config,
        llm.config,
        image_token_id=_image_token_id(tokenizer, f"the tokenizer of {language_dir}"),
        downsample_ratio=preset.downsample_ratio,
        projector_hidden_act=preset.projector_hidden_act,
    )
    with torch.device("meta"):  # a skeleton: every part is replaced below, nothing is allocated twice
        model = InternVLForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = getattr(llm, llm.base_model_prefix)
    model.lm_head = output_embeddings(llm)  # after resizing, which may replace the module
    with _seeded(seed):
        projector = InternVLMultiModalProjector(config)
        projector.apply(model._init_weights)  # transformers' own initialisation for a new module
    model.model.multi_modal_projector = projector.to(dtype)
    stray = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    assert not stray, f"parts of the skeleton were not replaced: {stray[:5]}"
    check_every_parameter_assigned(model)
    _set_generation_tokens(model, tokenizer)
    return BuiltModel(model=model, tokenizer=tokenizer, tiler=Tiler(tile_size=side, max_tiles=max_tiles), source=source)


def _image_token_id(tokenizer: PreTrainedTokenizerBase, what: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    if not isinstance(token_id, int) or IMG_CONTEXT not in tokenizer.get_vocab():
        raise ModelLoadError(f"{what} has no {IMG_CONTEXT} token; it needs the image tokens")
    return token_id


def _set_generation_tokens(model: InternVLForConditionalGeneration, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generation stops at the tokenizer's end of turn (and at `<|endoftext|>`, as Qwen2's chat models do) and pads
    with its pad token. vLLM and `sailvl serve` both stop at exactly these ids, read from generation_config.json."""
    stops = [
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids(END_OF_TEXT) if END_OF_TEXT in tokenizer.get_vocab() else None,
    ]
    stops = list(dict.fromkeys(s for s in stops if isinstance(s, int)))
    if stops:
        model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    if tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def _refuse_meta(device: str | torch.device | None, what: str) -> None:
    if device is not None and torch.device(device).type == "meta":
        raise ModelLoadError(f"device 'meta' builds a preset's structure only; {what} needs real weights")


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU generator inside, leaving the caller's random state as it was."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
