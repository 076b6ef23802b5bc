"""The stage's result: `<uri>/final/`, a Hugging Face InternVL folder that transformers and vLLM load as it is.

It holds what `sailvl.model.checkpoint.export_checkpoint` writes (model, tokenizer, image processor and processor
configs) plus the resolved spec as `sailvl_stage.json`, and appears in one rename once all of it is written and
`sailvl check-export` finds nothing wrong with it: a `final/` folder exists only after a complete run, and only as
an export vLLM serves as trained. The weights are stored in the stage's precision (`EXPORT_DTYPES`), whatever the
hardware computed in, so a checkpoint is served in the same dtype on a laptop and on a cluster.
"""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from sailvl.model.checkpoint import BuiltModel, export_checkpoint
from sailvl.model.export_check import assert_export

FINAL = "final"
STAGE_FILE = "sailvl_stage.json"


def export_final(
    root: Path, built: BuiltModel, state: dict[str, torch.Tensor], stage: dict[str, Any], *, dtype: torch.dtype
) -> Path:
    """Write `state` (the trained weights, gathered) as `<root>/final/` with `built`'s tokenizer and tiling."""
    model = _fresh_model(built, state, dtype)
    for stale in root.glob(f".{FINAL}.*"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".{FINAL}.partial-{uuid.uuid4().hex[:8]}"
    try:
        folder = export_checkpoint(
            BuiltModel(model=model, tokenizer=built.tokenizer, tiler=built.tiler, source=built.source),
            staging / FINAL,
        )
        (folder / STAGE_FILE).write_text(json.dumps(stage, indent=2) + "\n", encoding="utf-8")
        assert_export(folder)  # a broken export fails the stage here, not a CurationRun three steps later
        final = root / FINAL
        if final.exists():  # exported by an attempt that died before reporting; this export replaces it
            retired = root / f".{FINAL}.old-{uuid.uuid4().hex[:8]}"
            final.rename(retired)
            shutil.rmtree(retired)
        folder.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _fresh_model(built: BuiltModel, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    """A plain CPU copy of the model holding `state`: the training model may be sharded, wrapped or on a GPU."""
    with torch.device("meta"):
        model = type(built.model)(built.model.config)
    model.load_state_dict({k: v.to("cpu", dtype=dtype) for k, v in state.items()}, strict=True, assign=True)
    # Buffers outside the state dict (rotary frequencies ...) are recomputed constants: copy them over.
    trained = dict(built.model.named_buffers())
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner) if owner else model
            module.register_buffer(attr, trained[name].detach().to("cpu", copy=True), persistent=False)
    model.generation_config = copy.deepcopy(built.model.generation_config)
    return model
