"""Giving a language model's tokenizer InternVL's image tokens, and the embedding matrix rows to match.

The tokens are named in the tokenizer (`start_image_token`, `end_image_token`, `context_image_token`,
`video_token`) because transformers' InternVL processor looks them up by those names. Their embedding rows, in the
input embeddings and in an untied lm_head, start as the mean of the rows of the tokens the tokenizer already had:
a new token then begins as an "average" token rather than noise of an arbitrary scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sailvl.data.tokenizer import VIDEO_TOKEN
from sailvl.data.tokens import IMG_CONTEXT, IMG_END, IMG_START

IMAGE_TOKEN_NAMES = {
    "start_image_token": IMG_START,
    "end_image_token": IMG_END,
    "context_image_token": IMG_CONTEXT,
    "video_token": VIDEO_TOKEN,  # transformers' InternVL processor needs one even for images only
}


def load_tokenizer_with_image_tokens(folder: str | Path) -> tuple[PreTrainedTokenizerBase, int, list[int]]:
    """The tokenizer saved in `folder` with the image tokens added and named.

    Returns the tokenizer, the number of tokens it had before, and the ids of the tokens that were added.
    """
    before = AutoTokenizer.from_pretrained(folder)
    known = before.get_vocab()
    tokenizer = AutoTokenizer.from_pretrained(folder, extra_special_tokens=dict(IMAGE_TOKEN_NAMES))
    vocab = tokenizer.get_vocab()
    added = [vocab[token] for token in IMAGE_TOKEN_NAMES.values() if token not in known]
    return tokenizer, len(before), added


def grow_embeddings(model: PreTrainedModel, vocab_size: int, known_tokens: int, new_ids: list[int]) -> None:
    """Make room for `vocab_size` tokens and set the rows of `new_ids` to the mean of rows [0, known_tokens).

    A model whose matrix is already large enough (Qwen2.5 pads its vocabulary to 151936) keeps its size; the rows
    of the new tokens are reset all the same, since padding rows were never trained.
    """
    rows = _input_matrix(model).shape[0]
    if known_tokens > rows:
        raise ValueError(f"the tokenizer has {known_tokens} tokens but the model's embedding matrix only {rows} rows")
    if vocab_size > rows:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    matrices = [_input_matrix(model)]
    output = output_embeddings(model)
    if output is not None and output.weight is not matrices[0]:
        matrices.append(cast(torch.Tensor, output.weight))
    index = torch.tensor(new_ids, dtype=torch.long)
    with torch.no_grad():
        for weight in matrices:
            mean = weight[:known_tokens].float().mean(dim=0)
            weight[index] = mean.to(dtype=weight.dtype).expand(len(new_ids), -1)


def untie_embeddings(model: PreTrainedModel) -> None:
    """Give a model whose lm_head shares the input embedding matrix its own copy of it."""
    head = output_embeddings(model)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no lm_head to untie")
    embeddings = _input_matrix(model)
    if head.weight is embeddings:
        head.weight = nn.Parameter(embeddings.detach().clone())
    model.config.get_text_config().tie_word_embeddings = False  # keeps transformers from tying them again


def output_embeddings(model: PreTrainedModel) -> nn.Module | None:
    """The model's lm_head (or None for a model without one)."""
    module: nn.Module | None = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    return module


def _input_matrix(model: PreTrainedModel) -> torch.Tensor:
    return cast(torch.Tensor, model.get_input_embeddings().weight)
