"""Records to token sequences: the `caption`, `chat` and `text` templates, with loss masks and image tokens.

Prompts follow the layout of `sailvl.data.chat`: the record's `<image>` placeholders are handed to the tokenizer's
chat template as `<IMG_CONTEXT>`, and each `<IMG_CONTEXT>` of the rendered text becomes `<img>` + `<IMG_CONTEXT>` x
(tokens per tile x tiles) + `</img>`, inserted as ids, never through the tokenizer: the tokens vLLM's InternVL
processor gives a served model. Labels are IGNORE_INDEX everywhere but what the model must learn: the assistant
turns (their text and the closing `<|im_end|>`) for `chat` and `caption`, every token for `text`.

Too long (more than `max_length` tokens) is handled by one documented rule: the sequence is cut at
`max_length`; when the cut falls inside an image's tokens it moves back to before that image, which is dropped
with every later image (an image's tokens are never cut in half). A sample left without a supervised token is
dropped (`SampleDropped`, reason `too_long`); `text` samples are simply cut.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers import PreTrainedTokenizerBase

from sailvl.data.chat import prompt_content
from sailvl.data.records import Record
from sailvl.data.tiling import Tiler
from sailvl.data.tokens import END_OF_TEXT, IGNORE_INDEX, IMAGE_PLACEHOLDER, IMG_CONTEXT, IMG_END, IMG_START

TemplateName = Literal["caption", "chat", "text"]
# The instruction a caption is the answer to; the recaption step's default prompt is the same sentence.
CAPTION_PROMPT = "Describe this image in detail."


class SampleDropped(ValueError):
    """A record that cannot become a training sample; `reason` is a short counter key."""

    def __init__(self, record_id: str, reason: str, detail: str) -> None:
        super().__init__(f"record {record_id!r}: {detail}")
        self.record_id, self.reason = record_id, reason


@dataclass
class Sample:
    """One tokenized record: ids, labels (IGNORE_INDEX where no loss) and the tiles of its images, in order."""

    id: str
    input_ids: np.ndarray  # int64 (L,)
    labels: np.ndarray  # int64 (L,)
    pixel_values: np.ndarray | None  # float32 (tiles, 3, T, T), or None without images
    tiles_per_image: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def supervised_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


@dataclass(frozen=True, kw_only=True)
class Renderer:
    """Turns records into samples for one template, tokenizer, tiler and length limit."""

    tokenizer: PreTrainedTokenizerBase
    template: TemplateName
    tiler: Tiler
    tokens_per_tile: int
    max_length: int

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens; found {self.max_length}")
        for token in (IMG_START, IMG_END, IMG_CONTEXT):
            if self.tokenizer.convert_tokens_to_ids(token) in (None, self.tokenizer.unk_token_id):
                raise ValueError(f"the tokenizer lacks the image token {token!r}; add the image tokens to it first")

    def __call__(self, record: Record) -> Sample:
        if self.template == "text":
            return self._text(record)
        messages = self._messages(record)
        pieces = _supervised_pieces(self.tokenizer, messages)
        tiles = [self._tile(record, i, image) for i, image in enumerate(record.images)]
        try:
            ids, labels, spans = self._encode(pieces, [t.shape[0] for t in tiles])
        except ValueError as err:  # the text itself holds image tokens
            raise SampleDropped(record.id, "image_placeholder_mismatch", str(err)) from None
        return self._fit(record.id, ids, labels, spans, tiles)

    def prompt(self, messages: list[dict[str, str]], images: Sequence[bytes]) -> Sample:
        """The input a model answers `messages` from: the generation prompt, images inserted at their `<image>`
        placeholders (all labels IGNORE_INDEX). Serving uses this, so a served model sees what training showed it.

        Raises ValueError when the placeholders do not match the images or the prompt exceeds max_length.
        """
        placeholders = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
        if placeholders != len(images):
            raise ValueError(f"{placeholders} {IMAGE_PLACEHOLDER} placeholders for {len(images)} images")
        tiles = [self._tile(Record(id="prompt"), i, image) for i, image in enumerate(images)]
        pieces = [(render_prompt(self.tokenizer, messages), False)]
        ids, labels, _ = self._encode(pieces, [t.shape[0] for t in tiles])
        if len(ids) > self.max_length:
            raise ValueError(f"the prompt has {len(ids)} tokens, more than the {self.max_length} allowed")
        return Sample(
            id="prompt",
            input_ids=np.asarray(ids, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.int64),
            pixel_values=np.concatenate(tiles) if tiles else None,
            tiles_per_image=[t.shape[0] for t in tiles],
        )

    def _messages(self, record: Record) -> list[dict[str, str]]:
        images = len(record.images)
        if self.template == "caption":
            if not record.text:
                raise SampleDropped(record.id, "no_text", "the caption template needs text; the record has none")
            prompt = IMAGE_PLACEHOLDER + "\n"
            return [
                {"role": "user", "content": prompt * images + CAPTION_PROMPT},
                {"role": "assistant", "content": record.text},
            ]
        if not record.conversations:
            raise SampleDropped(record.id, "no_conversations", "the chat template needs conversations; found none")
        messages = [dict(m) for m in record.conversations]
        if messages[0]["role"] == "assistant":
            raise SampleDropped(
                record.id, "starts_with_assistant", "a conversation must open with a user or system turn"
            )
        if not any(m["role"] == "assistant" for m in messages):
            raise SampleDropped(record.id, "no_assistant_turn", "a conversation needs an assistant turn to learn")
        placeholders = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
        if placeholders == 0 and images:
            first_user = next((m for m in messages if m["role"] == "user"), None)
            if first_user is None:
                raise SampleDropped(record.id, "no_user_turn", "images need a user turn to go in; found none")
            first_user["content"] = (IMAGE_PLACEHOLDER + "\n") * images + first_user["content"]
        elif placeholders != images:
            raise SampleDropped(
                record.id,
                "image_placeholder_mismatch",
                f"{placeholders} {IMAGE_PLACEHOLDER} placeholders for {images} images",
            )
        return messages

    def _tile(self, record: Record, index: int, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return self.tiler(image)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise SampleDropped(record.id, "bad_image", f"image {index} cannot be decoded: {exc}") from None

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        assert isinstance(token_id, int), token
        return token_id

    def _encode(
        self, pieces: Sequence[tuple[str, bool]], tiles: Sequence[int]
    ) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        """Ids and labels of the pieces, images inserted at the placeholders; spans are each image's [start, end)."""
        start_id, end_id, context_id = (self._token_id(t) for t in (IMG_START, IMG_END, IMG_CONTEXT))
        ids: list[int] = []
        labels: list[int] = []
        spans: list[tuple[int, int]] = []
        for text, supervised in pieces:
            for k, chunk in enumerate(text.split(IMG_CONTEXT)):
                if k > 0:  # an image goes where the template wrote its token
                    if len(spans) == len(tiles):
                        raise ValueError(f"the rendered prompt has more {IMG_CONTEXT} than the {len(tiles)} images")
                    n = tiles[len(spans)] * self.tokens_per_tile
                    span = [start_id, *([context_id] * n), end_id]
                    spans.append((len(ids), len(ids) + len(span)))
                    ids += span
                    labels += [IGNORE_INDEX] * len(span)
                if chunk:
                    chunk_ids = cast(list[int], self.tokenizer.encode(chunk, add_special_tokens=False))
                    ids += chunk_ids
                    labels += chunk_ids if supervised else [IGNORE_INDEX] * len(chunk_ids)
        if len(spans) != len(tiles):
            raise ValueError(f"the rendered prompt has {len(spans)} {IMG_CONTEXT} tokens for {len(tiles)} images")
        return ids, labels, spans

    def _fit(
        self,
        record_id: str,
        ids: list[int],
        labels: list[int],
        spans: list[tuple[int, int]],
        tiles: list[np.ndarray],
    ) -> Sample:
        cut = len(ids)
        if cut > self.max_length:
            cut = self.max_length
            inside = next((i for i, (start, end) in enumerate(spans) if start < cut < end), None)
            if inside is not None:
                cut = spans[inside][0]
            kept = sum(1 for _, end in spans if end <= cut)
            spans, tiles = spans[:kept], tiles[:kept]
            ids, labels = ids[:cut], labels[:cut]
        labels_arr = np.asarray(labels, dtype=np.int64)
        if not (labels_arr != IGNORE_INDEX).any():
            raise SampleDropped(
                record_id, "too_long", f"nothing to learn within max_length {self.max_length} (image tokens fill it)"
            )
        return Sample(
            id=record_id,
            input_ids=np.asarray(ids, dtype=np.int64),
            labels=labels_arr,
            pixel_values=np.concatenate(tiles) if tiles else None,
            tiles_per_image=[t.shape[0] for t in tiles],
        )

    def _text(self, record: Record) -> Sample:
        text = record.text
        if not text and record.conversations:
            text = "\n".join(m["content"] for m in record.conversations)
        if not text:
            raise SampleDropped(record.id, "no_text", "the text template needs text; the record has none")
        ids = self.tokenizer.encode(text.replace(IMAGE_PLACEHOLDER, "") + END_OF_TEXT, add_special_tokens=False)
        ids_arr = np.asarray(ids[: self.max_length], dtype=np.int64)
        return Sample(id=record.id, input_ids=ids_arr, labels=ids_arr.copy(), pixel_values=None)


def _supervised_pieces(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, supervised) pieces: each assistant answer, up to its end token, is
    supervised. Found by rendering growing prefixes, so any chat template the tokenizer carries works."""
    full = _render(tokenizer, messages, generation_prompt=False)
    pieces: list[tuple[str, bool]] = []
    done = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (full.startswith(through) and through.startswith(prompt) and len(prompt) >= done):
            raise ValueError("the tokenizer's chat template does not render conversations as growing prefixes")
        answer_end = len(through.rstrip())  # the end-of-turn token is learned; the newline after it is not
        pieces += [(full[done : len(prompt)], False), (full[len(prompt) : answer_end], True)]
        done = answer_end
    pieces.append((full[done:], False))
    return [(text, supervised) for text, supervised in pieces if text]


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    messages = [{**m, "content": prompt_content(m["content"])} for m in messages]
    rendered: Any = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return str(rendered)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The text a model is prompted with to answer `messages` (the generation prompt included)."""
    return _render(tokenizer, messages, generation_prompt=True)
