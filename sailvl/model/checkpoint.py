"""InternVL checkpoints on disk: load one, and export one that transformers (and vLLM) load as they are.

An exported folder holds the model (`config.json`, `generation_config.json`, safetensors), the tokenizer with
its image tokens named, the image processor config (`GotOcr2ImageProcessor` with crop_to_patches, the tile size,
maxTiles and the ImageNet mean/std, which is what our tiling reproduces) and `processor_config.json` (the
InternVL processor and its tokens per tile). It is written under a temporary name and renamed when complete, so a
folder that exists is whole.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    GotOcr2ImageProcessorPil,
    InternVLForConditionalGeneration,
    PreTrainedTokenizerBase,
)

from sailvl.data.tiling import BICUBIC, IMAGENET_MEAN, IMAGENET_STD, Tiler, image_token_string
from sailvl.data.tokens import IMG_CONTEXT
from sailvl.model.components import parameter_counts
from sailvl.model.presets import side_of, vision_config_of


class ModelLoadError(ValueError):
    """A checkpoint or component that cannot be loaded as asked: missing files, the wrong kind, mismatched sizes."""


@dataclass(frozen=True, kw_only=True)
class BuiltModel:
    """A model ready to train or serve: the network, its tokenizer, and the tiling its images go through."""

    model: InternVLForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    tiler: Tiler
    source: str
    """Where the weights came from (`preset:tiny`, a checkpoint URI ...): the stage's lineage."""

    @property
    def tokens_per_tile(self) -> int:
        return int(self.model.config.image_seq_length)

    def image_tokens(self, image: Image.Image | int) -> str:
        """The prompt text an image (or a number of tiles) stands for."""
        tiles = image if isinstance(image, int) else self.tiler.num_tiles(*image.size)
        return image_token_string(tiles, self.tokens_per_tile)

    def parameter_counts(self, trainable_only: bool = False) -> dict[str, int]:
        return parameter_counts(self.model, trainable_only)


def read_model_type(folder: Path) -> str:
    """The `model_type` in a checkpoint folder's config.json."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{folder} is not a Hugging Face checkpoint folder: it has no config.json")
    try:
        model_type = json.loads(config.read_text())["model_type"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{config} must be a JSON object with a model_type; it could not be read: {err}") from err
    return str(model_type)


def load_checkpoint(
    folder: str | Path,
    *,
    max_tiles: int | None = None,
    dtype: torch.dtype = torch.float32,
    source: str = "",
) -> BuiltModel:
    """A Hugging Face InternVL checkpoint folder; `max_tiles` overrides the one its image processor config gives."""
    folder = Path(folder)
    model_type = read_model_type(folder)
    if model_type != "internvl":
        raise ModelLoadError(f"{folder} must hold an InternVL checkpoint (model_type 'internvl'); found {model_type!r}")
    model = InternVLForConditionalGeneration.from_pretrained(folder, dtype=dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"the checkpoint {folder} needs its tokenizer files: {err}") from err
    token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT) if IMG_CONTEXT in tokenizer.get_vocab() else None
    if token_id != model.config.image_token_id:
        raise ModelLoadError(
            f"the tokenizer of {folder} maps {IMG_CONTEXT} to {token_id} but the model expects image tokens at id "
            f"{model.config.image_token_id}"
        )
    tiler = _tiler_from_folder(folder, model, max_tiles)
    return BuiltModel(model=model, tokenizer=tokenizer, tiler=tiler, source=source or str(folder))


def _tiler_from_folder(folder: Path, model: InternVLForConditionalGeneration, max_tiles: int | None) -> Tiler:
    side = side_of(vision_config_of(model.config).image_size)
    path = folder / "preprocessor_config.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    size = settings.get("size", {"height": side, "width": side})
    if (size.get("height"), size.get("width")) != (side, side):
        raise ModelLoadError(f"{path} resizes tiles to {size} but the vision tower takes {side}x{side} tiles")
    return Tiler(
        tile_size=side,
        max_tiles=max_tiles if max_tiles is not None else int(settings.get("max_patches", 12)),
        min_tiles=int(settings.get("min_patches", 1)),
        mean=tuple(settings.get("image_mean", IMAGENET_MEAN)),
        std=tuple(settings.get("image_std", IMAGENET_STD)),
    )


def image_processor_for(tiler: Tiler) -> GotOcr2ImageProcessorPil:
    """transformers' InternVL image processor configured to tile exactly as `tiler` does."""
    if not tiler.thumbnail:
        raise ValueError("transformers' InternVL image processor always adds the thumbnail; found thumbnail=False")
    return GotOcr2ImageProcessorPil(
        crop_to_patches=True,
        min_patches=tiler.min_tiles,
        max_patches=tiler.max_tiles,
        size={"height": tiler.tile_size, "width": tiler.tile_size},
        resample=BICUBIC,
        image_mean=list(tiler.mean),
        image_std=list(tiler.std),
        do_convert_rgb=True,
    )


def write_processing_files(built: BuiltModel, folder: Path, *, chat_template: str | None = None) -> None:
    """What turns requests into the model's inputs: the tokenizer (with its chat template), the image processor
    config and `processor_config.json` (the InternVL processor and its tokens per tile)."""
    built.tokenizer.save_pretrained(folder)
    image_processor_for(built.tiler).save_pretrained(folder)
    processor = {"processor_class": "InternVLProcessor", "image_seq_length": built.tokens_per_tile}
    (folder / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    if chat_template is not None:
        (folder / "chat_template.jinja").write_text(chat_template)


def export_checkpoint(
    built: BuiltModel, folder: str | Path, *, chat_template: str | None = None, overwrite: bool = False
) -> Path:
    """Write `built` as a Hugging Face InternVL folder; `chat_template` replaces the tokenizer's own, if given."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        built.model.save_pretrained(partial)  # weights, config.json (with the dtype they are stored in), generation
        write_processing_files(built, partial, chat_template=chat_template)
        if folder.exists():
            retired = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(retired)
            shutil.rmtree(retired)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
