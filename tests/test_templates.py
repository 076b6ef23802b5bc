"""Templates: loss masks on exactly what the model must learn, image tokens where the placeholders are, and the
documented rule for samples that are too long."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sailvl.data.records import Record
from sailvl.data.templates import CAPTION_PROMPT, Renderer, SampleDropped, render_prompt
from sailvl.data.tiling import Tiler
from sailvl.data.tokenizer import build_tiny_tokenizer
from sailvl.data.tokens import IGNORE_INDEX, IM_END, IMG_CONTEXT, IMG_END, IMG_START

TOKENS_PER_TILE = 16  # a 56px tile: (56 / 14 x 0.5)^2 = 4; we pick 16 to make spans obvious


def _png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tiny_tokenizer()


def renderer(tokenizer, template: str = "chat", max_length: int = 2048, max_tiles: int = 1) -> Renderer:  # type: ignore[no-untyped-def]
    return Renderer(
        tokenizer=tokenizer,
        template=template,  # type: ignore[arg-type]
        tiler=Tiler(tile_size=56, max_tiles=max_tiles),
        tokens_per_tile=TOKENS_PER_TILE,
        max_length=max_length,
    )


def _supervised_text(tokenizer, sample) -> str:  # type: ignore[no-untyped-def]
    return tokenizer.decode(sample.input_ids[sample.labels != IGNORE_INDEX])


def test_chat_learns_only_the_assistant_turns(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = Record(
        id="r1",
        images=(_png(),),
        conversations=[
            {"role": "user", "content": "<image>\nWhat colour is the circle?"},
            {"role": "assistant", "content": "Red."},
            {"role": "user", "content": "How many?"},
            {"role": "assistant", "content": "Two circles."},
        ],
    )
    sample = renderer(tokenizer)(record)
    assert _supervised_text(tokenizer, sample) == f"Red.{IM_END}Two circles.{IM_END}"
    assert (sample.labels[sample.labels != IGNORE_INDEX] == sample.input_ids[sample.labels != IGNORE_INDEX]).all()
    context = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    assert int((sample.input_ids == context).sum()) == TOKENS_PER_TILE
    assert sample.pixel_values is not None and sample.pixel_values.shape == (1, 3, 56, 56)


def test_the_prompt_is_what_a_served_model_sees(tokenizer) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": "Name the shape."}, {"role": "assistant", "content": "A star."}]
    sample = renderer(tokenizer)(Record(id="r", conversations=messages))
    prompt_ids = tokenizer.encode(render_prompt(tokenizer, messages[:1]), add_special_tokens=False)
    assert sample.input_ids[: len(prompt_ids)].tolist() == prompt_ids
    assert (sample.labels[: len(prompt_ids)] == IGNORE_INDEX).all()


def test_images_without_placeholders_go_first_in_the_first_user_turn(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = Record(
        id="r",
        images=(_png(), _png(colour=(0, 0, 255))),
        conversations=[{"role": "user", "content": "Compare."}, {"role": "assistant", "content": "Red and blue."}],
    )
    sample = renderer(tokenizer)(record)
    start = tokenizer.convert_tokens_to_ids(IMG_START)
    assert int((sample.input_ids == start).sum()) == 2
    assert sample.tiles_per_image == [1, 1]


def test_placeholder_count_must_match_the_images(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = Record(
        id="r",
        images=(_png(),),
        conversations=[{"role": "user", "content": "<image> <image> two?"}, {"role": "assistant", "content": "No."}],
    )
    with pytest.raises(SampleDropped) as info:
        renderer(tokenizer)(record)
    assert info.value.reason == "image_placeholder_mismatch"


def test_caption_template_answers_the_caption_prompt(tokenizer) -> None:  # type: ignore[no-untyped-def]
    sample = renderer(tokenizer, "caption")(Record(id="c", images=(_png(),), text="A red square on white."))
    assert _supervised_text(tokenizer, sample) == f"A red square on white.{IM_END}"
    assert CAPTION_PROMPT in tokenizer.decode(sample.input_ids)


def test_multi_tile_images_get_a_thumbnail(tokenizer) -> None:  # type: ignore[no-untyped-def]
    sample = renderer(tokenizer, "caption", max_tiles=4)(Record(id="c", images=(_png(224, 56),), text="Wide."))
    assert sample.tiles_per_image == [5]  # a 4x1 grid plus the thumbnail
    context = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    assert int((sample.input_ids == context).sum()) == 5 * TOKENS_PER_TILE


def test_text_template_learns_everything_and_is_cut(tokenizer) -> None:  # type: ignore[no-untyped-def]
    sample = renderer(tokenizer, "text", max_length=8)(Record(id="t", text="one two three four five six seven eight"))
    assert len(sample) == 8
    assert (sample.labels == sample.input_ids).all()


def test_a_cut_never_splits_an_image(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = Record(
        id="r",
        images=(_png(), _png()),
        conversations=[
            {"role": "user", "content": "<image>\nFirst?"},
            {"role": "assistant", "content": "Red square."},
            {"role": "user", "content": "<image>\nSecond?"},
            {"role": "assistant", "content": "Another red square."},
        ],
    )
    full = renderer(tokenizer)(record)
    start = tokenizer.convert_tokens_to_ids(IMG_START)
    second_image_at = int(np.flatnonzero(full.input_ids == start)[1])
    cut = renderer(tokenizer, max_length=second_image_at + 5)(record)  # the limit falls inside the second image
    assert len(cut) == second_image_at
    assert cut.tiles_per_image == [1] and cut.pixel_values is not None and cut.pixel_values.shape[0] == 1
    assert tokenizer.convert_tokens_to_ids(IMG_END) in cut.input_ids.tolist()
    assert _supervised_text(tokenizer, cut) == f"Red square.{IM_END}"


def test_nothing_left_to_learn_drops_the_sample(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = Record(id="r", images=(_png(),), text="A caption.")
    with pytest.raises(SampleDropped) as info:
        renderer(tokenizer, "caption", max_length=TOKENS_PER_TILE)(record)
    assert info.value.reason == "too_long"


@pytest.mark.parametrize(
    ("record", "template", "reason"),
    [
        (Record(id="x", images=(b"not an image",), text="t"), "caption", "bad_image"),
        (Record(id="x", images=(_png(),)), "caption", "no_text"),
        (Record(id="x", text="only text"), "chat", "no_conversations"),
        (Record(id="x", conversations=[{"role": "user", "content": "hi"}]), "chat", "no_assistant_turn"),
        (Record(id="x", conversations=[{"role": "assistant", "content": "hi"}]), "chat", "starts_with_assistant"),
    ],
)
def test_unusable_records_are_dropped_with_a_reason(tokenizer, record: Record, template: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SampleDropped) as info:
        renderer(tokenizer, template)(record)
    assert info.value.reason == reason


def test_a_tokenizer_without_image_tokens_is_refused() -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    bare = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]")
    with pytest.raises(ValueError, match="lacks the image token"):
        renderer(bare)
