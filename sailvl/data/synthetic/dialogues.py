"""SFT conversations of rising difficulty and a text-only corpus, all true of their scene.

knowledge: naming (what shape, what colour, what word) in one turn. instruction: multi-part and formatted answers
(lists, JSON, multiple choice, detailed captions), often over several turns. preference: counting and spatial
reasoning, absent objects, answers that show their steps.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from sailvl.data.synthetic.language import (
    article,
    capitalise,
    number,
    plural,
    reference_caption,
    short_description,
)
from sailvl.data.synthetic.scene import COLOURS, POSITIONS, SHAPES, Item, Scene, absent_kinds
from sailvl.data.tokens import IMAGE_PLACEHOLDER

Turn = dict[str, str]
QA = tuple[str, str]
COUNT_SUFFIX = "Answer with a single number."
YES_NO_SUFFIX = "Please answer yes or no."
CHOICE_SUFFIX = "Answer with the option's letter from the given choices directly."


def name(it: Item) -> str:
    return f"{it.colour} {it.shape}"


def conversation(pairs: list[QA]) -> list[Turn]:
    """User/assistant turns; the image placeholder opens the first question."""
    turns: list[Turn] = []
    for i, (question, answer) in enumerate(pairs):
        turns.append({"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{question}" if i == 0 else question})
        turns.append({"role": "assistant", "content": answer})
    return turns


# --- knowledge: naming ----------------------------------------------------------------------------------------------
def _what_shape(scene: Scene, rng: random.Random) -> QA:
    it = rng.choice(scene.shapes)
    return f"What shape is in the {it.position} of the image?", capitalise(f"{article(it.size)} {it.size} {name(it)}.")


def _what_colour(scene: Scene, rng: random.Random) -> QA:
    it = rng.choice(scene.shapes)
    return f"What color is the {it.shape} in the {it.position}?", capitalise(f"{it.colour}.")


def _name_shapes(scene: Scene, rng: random.Random) -> QA:
    kinds = sorted({s.shape for s in scene.shapes})
    listed = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    return "Which kinds of shapes appear in this image?", capitalise(f"{listed}.")


def _background(scene: Scene, rng: random.Random) -> QA:
    return "What color is the background?", capitalise(f"{scene.background}.")


def _read_word(scene: Scene, rng: random.Random) -> QA:
    if not scene.word:
        return "Is there any text in the image?", "No, the image contains only shapes."
    return "What word is written in the image?", f"{scene.word.text}"


def _brief(scene: Scene, rng: random.Random) -> QA:
    return rng.choice(("Describe the image briefly.", "What does this image show?")), short_description(scene)


def knowledge(scene: Scene, rng: random.Random) -> list[Turn]:
    asks: list[Callable[[Scene, random.Random], QA]] = [_what_shape, _what_colour, _name_shapes, _background, _brief]
    if scene.word:
        asks += [_read_word, _read_word]
    return conversation([rng.choice(asks)(scene, rng)])


# --- instruction: multi-part and formatted --------------------------------------------------------------------------
def _list_all(scene: Scene, rng: random.Random) -> QA:
    lines = [f"- {it.size} {name(it)} ({it.position})" for it in _sorted(scene.shapes)]
    return "List every shape with its size, color and position, one per line.", "\n".join(lines)


def _as_json(scene: Scene, rng: random.Random) -> QA:
    data = {
        "shapes": [{"shape": it.shape, "color": it.colour, "position": it.position} for it in _sorted(scene.shapes)],
        "word": scene.word.text if scene.word else None,
    }
    return "Return a JSON object with the keys shapes (shape, color, position) and word.", json.dumps(data)


def _multiple_choice(scene: Scene, rng: random.Random) -> QA:
    question, options, answer, _ = choice_question(scene, rng)
    lettered = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCD", options, strict=True))
    return f"{question}\n{lettered}\n{CHOICE_SUFFIX}", answer


def _detailed(scene: Scene, rng: random.Random) -> QA:
    question = rng.choice(("Describe this image in detail.", "Write a detailed caption for this image."))
    return question, reference_caption(scene, rng)


def _one_word_colour(scene: Scene, rng: random.Random) -> QA:
    it = rng.choice(scene.shapes)
    return f"Answer in one word: what color is the {it.shape} in the {it.position}?", it.colour


def instruction(scene: Scene, rng: random.Random) -> list[Turn]:
    asks: list[Callable[[Scene, random.Random], QA]] = [
        _list_all, _as_json, _multiple_choice, _detailed, _one_word_colour, _what_shape, _read_word,
    ]  # fmt: skip
    return conversation([ask(scene, rng) for ask in rng.sample(asks, rng.randint(2, 3))])


def choice_question(scene: Scene, rng: random.Random) -> tuple[str, list[str], str, str]:
    """A four-option question about shape, colour or position: (question, options, answer letter, category)."""
    it = rng.choice(scene.shapes)
    kind = rng.choice(("shape", "color", "position"))
    pool: tuple[str, ...]
    if kind == "shape":
        question, truth, pool = f"Which shape is in the {it.position}?", it.shape, SHAPES
    elif kind == "color":
        question, truth, pool = f"What color is the {it.shape} in the {it.position}?", it.colour, tuple(COLOURS)
    else:
        question, truth, pool = f"Where is the {it.size} {name(it)}?", it.position, POSITIONS
        taken = {s.position for s in scene.shapes if (s.colour, s.shape) == (it.colour, it.shape)}
        pool = tuple(p for p in pool if p not in taken)  # other places of the same kind would also be right
    options = [truth, *rng.sample(sorted(set(pool) - {truth}), 3)]
    rng.shuffle(options)
    return question, options, "ABCD"[options.index(truth)], kind


# --- preference: counting and spatial reasoning ---------------------------------------------------------------------
def _count_kind(scene: Scene, rng: random.Random) -> QA:
    by = rng.choice(("colour", "shape", "both"))
    it = rng.choice(scene.shapes)
    colour = it.colour if by in ("colour", "both") else None
    shape = it.shape if by in ("shape", "both") else None
    noun = f"{colour + ' ' if colour else ''}{plural(shape, 2) if shape else 'shapes'}"
    matching = [s for s in _sorted(scene.shapes) if colour in (None, s.colour) and shape in (None, s.shape)]
    where = ", ".join(s.position for s in matching)
    n = len(matching)
    answer = f"I see {noun} in: {where}. So there {'is' if n == 1 else 'are'} {number(n)}."
    if rng.random() < 0.4:
        return f"How many {noun} are there? {COUNT_SUFFIX}", str(n)
    return f"How many {noun} are in the image?", answer


def _relation(scene: Scene, rng: random.Random) -> QA:
    a, b = rng.sample(scene.shapes, 2)
    (ra, ca), (rb, cb) = a.cell, b.cell
    axis = rng.choice(("left", "above"))
    holds = ca < cb if axis == "left" else ra < rb
    phrase = "to the left of" if axis == "left" else "above"
    answer = (
        f"{'Yes' if holds else 'No'}. The {name(a)} is in the {a.position} and the {name(b)} is in the {b.position}."
    )
    return f"Is the {name(a)} in the {a.position} {phrase} the {name(b)} in the {b.position}?", answer


def _neighbour(scene: Scene, rng: random.Random) -> QA:
    it = rng.choice(scene.shapes)
    dr, dc, word = rng.choice(((0, 1, "right of"), (0, -1, "left of"), (-1, 0, "above"), (1, 0, "below")))
    r, c = it.cell[0] + dr, it.cell[1] + dc
    if not (0 <= r < 3 and 0 <= c < 3):
        answer = f"Nothing: the {name(it)} is at the edge of the image."
    else:
        other = scene.at(POSITIONS[r * 3 + c])
        if other is None:
            answer = f"Nothing, the {POSITIONS[r * 3 + c]} is empty."
        elif other.shape == "word":
            answer = f'The word "{other.text}".'
        else:
            answer = capitalise(f"{article(other.size)} {other.size} {name(other)}.")
    return f"What is directly {word} the {name(it)} in the {it.position}?", answer


def _absent(scene: Scene, rng: random.Random) -> QA:
    if rng.random() < 0.5:
        colour, shape = rng.choice(absent_kinds(scene)[:8])
        return f"Is there a {colour} {shape} in the image? {YES_NO_SUFFIX}", "No"
    it = rng.choice(scene.shapes)
    return f"Is there a {name(it)} in the image? {YES_NO_SUFFIX}", "Yes"


def _compare(scene: Scene, rng: random.Random) -> QA:
    a, b = rng.sample(SHAPES, 2)
    na, nb = scene.count(shape=a), scene.count(shape=b)
    verdict = "the same number" if na == nb else (f"more {plural(a, 2)}" if na > nb else f"more {plural(b, 2)}")
    counts = f"{number(na)} {plural(a, na)} and {number(nb)} {plural(b, nb)}"
    answer = f"There {'is' if na == 1 else 'are'} {counts}, so there are {verdict}."
    return f"Are there more {plural(a, 2)} or more {plural(b, 2)}?", answer


def preference(scene: Scene, rng: random.Random) -> list[Turn]:
    asks: list[Callable[[Scene, random.Random], QA]] = [_count_kind, _count_kind, _neighbour, _absent, _compare]
    if len(scene.shapes) >= 2:
        asks += [_relation, _relation]
    return conversation([ask(scene, rng) for ask in rng.sample(asks, rng.randint(1, 3))])


# --- text-only corpus -----------------------------------------------------------------------------------------------
_KNOWLEDGE = (
    "A triangle has three sides and three corners.",
    "A square has four equal sides and four right angles.",
    "A hexagon has six sides.",
    "A star has five points.",
    "A circle is round and has no corners.",
    "A diamond is a square turned on one of its corners.",
    "Mixing red and yellow makes orange.",
    "Mixing blue and red makes purple.",
    "Mixing blue and yellow makes green.",
    "Pink is a light shade of red.",
    "The grid has three rows and three columns: top, middle and bottom; left, center and right.",
)


def text_passage(scene: Scene, rng: random.Random) -> str:
    """A paragraph for warming up a language model: a described scene, facts about shapes, counting, a Q&A."""
    parts = [reference_caption(scene, rng)]
    parts += rng.sample(_KNOWLEDGE, 2)
    start = rng.randint(1, 6)
    parts.append(capitalise(", ".join(number(k) for k in range(start, start + rng.randint(3, 6))) + "."))
    question, answer = rng.choice((_count_kind, _what_colour, _what_shape))(scene, rng)
    parts.append(f"Question: {question} Answer: {answer}")
    return " ".join(parts)


def _reading_order(it: Item) -> int:
    return POSITIONS.index(it.position)


def _sorted(items: tuple[Item, ...]) -> list[Item]:
    return sorted(items, key=_reading_order)
