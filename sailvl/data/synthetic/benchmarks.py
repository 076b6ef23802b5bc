"""The synthetic benchmarks (shapes_caption, shapes_vqa, shapes_count, shapes_ocr, shapes_pope): one question per
image, with its exact answer, in the VLMEvalKit TSV layout.

Columns: `index`, `image` (base64 of the encoded image), `question`, `answer`, the options `A`..`D` for multiple
choice (shapes_vqa), `category`, and for shapes_caption `facts` (the scene's true facts as JSON, for fact-recall
scoring). shapes_pope answers `yes` / `no`, half each.
"""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sailvl.api.benchmarks import SYNTHETIC_BENCHMARKS
from sailvl.data.synthetic.dialogues import CHOICE_SUFFIX, COUNT_SUFFIX, YES_NO_SUFFIX, choice_question, name
from sailvl.data.synthetic.language import plural, reference_caption
from sailvl.data.synthetic.scene import Scene, absent_kinds
from sailvl.data.synthetic.spec import SyntheticSpec, SyntheticUriError, parse_synthetic_uri

COLUMNS: dict[str, tuple[str, ...]] = {
    "shapes_caption": ("index", "image", "question", "answer", "category", "facts"),
    "shapes_vqa": ("index", "image", "question", "answer", "A", "B", "C", "D", "category"),
    "shapes_count": ("index", "image", "question", "answer", "category"),
    "shapes_ocr": ("index", "image", "question", "answer", "category"),
    "shapes_pope": ("index", "image", "question", "answer", "category"),
}
assert tuple(COLUMNS) == SYNTHETIC_BENCHMARKS


def benchmark_item(benchmark: str, scene: Scene, index: int, rng: random.Random) -> dict[str, Any]:
    """The row of one benchmark item (all columns but `image`)."""
    item: dict[str, Any] = {"index": index}
    if benchmark == "shapes_caption":
        item |= {
            "question": "Describe this image in detail.",
            "answer": reference_caption(scene, rng),
            "category": "caption",
            "facts": json.dumps(scene.facts()),
        }
    elif benchmark == "shapes_vqa":
        question, options, answer, category = choice_question(scene, rng)
        item |= {"question": question, "answer": answer, "category": category}
        item |= dict(zip("ABCD", options, strict=True))
    elif benchmark == "shapes_count":
        item |= _count_item(scene, rng)
    elif benchmark == "shapes_ocr":
        assert scene.word is not None, "shapes_ocr scenes always carry a word"
        question = "What word is written in the image? Answer with the word only."
        item |= {"question": question, "answer": scene.word.text, "category": "word"}
    elif benchmark == "shapes_pope":
        item |= _pope_item(scene, index, rng)
    else:
        raise ValueError(
            f"unknown synthetic benchmark {benchmark!r}; expected one of {', '.join(SYNTHETIC_BENCHMARKS)}"
        )
    return item


def prompt_of(benchmark: str, item: dict[str, Any]) -> str:
    """The question as a model is asked it (options listed for multiple choice)."""
    if benchmark != "shapes_vqa":
        return str(item["question"])
    options = "\n".join(f"{letter}. {item[letter]}" for letter in "ABCD")
    return f"{item['question']}\n{options}\n{CHOICE_SUFFIX}"


def _count_item(scene: Scene, rng: random.Random) -> dict[str, Any]:
    category = rng.choice(("total", "color", "shape", "color-shape"))
    it = rng.choice(scene.shapes)
    colour, shape = it.colour, it.shape
    if category == "color-shape" and rng.random() < 0.15:  # sometimes none: the answer 0 must be earned too
        colour, shape = rng.choice(absent_kinds(scene))
    colour_or_none = colour if category in ("color", "color-shape") else None
    shape_or_none = shape if category in ("shape", "color-shape") else None
    noun = f"{colour_or_none + ' ' if colour_or_none else ''}{plural(shape_or_none, 2) if shape_or_none else 'shapes'}"
    count = scene.count(colour=colour_or_none, shape=shape_or_none)
    return {
        "question": f"How many {noun} are there in the image? {COUNT_SUFFIX}",
        "answer": str(count),
        "category": category,
    }


def _pope_item(scene: Scene, index: int, rng: random.Random) -> dict[str, Any]:
    setting = rng.choice(("random", "adversarial"))
    if index % 2 == 0:
        subject, answer = name(rng.choice(scene.shapes)), "yes"
    else:
        absent = absent_kinds(scene)
        # Adversarial: an absent kind that shares a colour or a shape with one present (listed first).
        colour, shape = rng.choice(absent[:6]) if setting == "adversarial" else rng.choice(absent)
        subject, answer = f"{colour} {shape}", "no"
    return {"question": f"Is there a {subject} in the image? {YES_NO_SUFFIX}", "answer": answer, "category": setting}


def benchmark_spec(data_uri: str, benchmark: str) -> SyntheticSpec:
    """The spec of `benchmark`'s items from an EvalSuite's `synthetic://shapes?...` data URI.

    The URI's split may be absent, `test`, or the benchmark itself; any other split is an error.
    """
    if benchmark not in SYNTHETIC_BENCHMARKS:
        raise ValueError(
            f"unknown synthetic benchmark {benchmark!r}; expected one of {', '.join(SYNTHETIC_BENCHMARKS)}"
        )
    spec = parse_synthetic_uri(data_uri)
    split_given = "split" in parse_qs(urlsplit(data_uri).query)
    if split_given and spec.split not in ("test", benchmark):
        raise SyntheticUriError(
            f"benchmark {benchmark} reads split=test or split={benchmark} of {data_uri!r}; found split={spec.split}"
        )
    return spec.with_split(benchmark)
