"""Text about a scene: dense true captions, noisy web-style alt text, and reading facts back out of a caption.

`extract_facts` is the inverse of `reference_caption`: on a reference caption it returns exactly `Scene.facts()`,
and on a model's caption it returns the facts the caption states, which the shapes_caption benchmark scores
against the truth (recall and precision, as F1).
"""

from __future__ import annotations

import random
import re
from typing import Any

from sailvl.data.synthetic.scene import COLOURS, POSITIONS, SHAPES, SIZES, Scene, absent_kinds

NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)


def number(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def reference_caption(scene: Scene, rng: random.Random) -> str:
    """A dense, true caption stating every fact of the scene (one sentence per kind of shape)."""
    total = len(scene.shapes)
    opening = rng.choice(
        (
            f"The image shows {number(total)} {plural('shape', total)} on a {scene.background} background.",
            f"A {scene.background} background with {number(total)} {plural('shape', total)} on it.",
            f"There {'is' if total == 1 else 'are'} {number(total)} {plural('shape', total)} "
            f"on a {scene.background} background.",
        )
    )
    sentences = [opening]
    for colour, shape, items in scene.groups():
        if len(items) == 1:
            it = items[0]
            sentences.append(
                rng.choice(
                    (
                        f"There is a single {it.size} {colour} {shape} in the {it.position}.",
                        f"In the {it.position} there is one {it.size} {colour} {shape}.",
                        f"One {it.size} {colour} {shape} sits in the {it.position}.",
                    )
                )
            )
        else:
            places = [f"{article(it.size)} {it.size} one in the {it.position}" for it in items]
            listed = ", ".join(places[:-1]) + " and " + places[-1]
            sentences.append(f"There are {number(len(items))} {colour} {plural(shape, 2)}: {listed}.")
    if scene.word:
        w = scene.word
        sentences.append(
            rng.choice(
                (
                    f'The word "{w.text}" is written in black in the {w.position}.',
                    f'In the {w.position}, the word "{w.text}" appears in black letters.',
                )
            )
        )
    return " ".join(sentences)


def short_description(scene: Scene) -> str:
    """One true sentence naming every kind of shape (no positions)."""
    parts = [f"{number(len(items))} {colour} {plural(shape, len(items))}" for colour, shape, items in scene.groups()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return capitalise(f"{listed} on a {scene.background} background.")


_VAGUE = (
    "shapes", "colorful shapes", "geometric shapes", "abstract background", "simple clipart", "image",
    "picture", "shapes on a plain background", "kids learning shapes", "pattern", "icons", "design elements",
)  # fmt: skip
_JUNK = (
    "IMG_{n}.png", "DSC{n}.jpg", "untitled-{n}", "stock photo {n}", "click here to download", "free vector {n}",
    "thumbnail", "banner_{n}", "screenshot {n}", "image not found",
)  # fmt: skip
_SUFFIXES = ("", "", "", " - stock vector", " | clipart", " free png", " (hd)", " wallpaper", " icon set")
ALT_KINDS = ("true", "vague", "wrong", "junk")


def alt_text(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """Short web-style alt text and its kind: true (but partial), vague, wrong (a colour or shape swapped) or junk."""
    kind = rng.choices(ALT_KINDS, weights=[45, 25, 15, 15])[0]
    groups = scene.groups()
    if kind == "junk":
        return rng.choice(_JUNK).format(n=rng.randint(100, 99999)), kind
    if kind == "vague":
        text = rng.choice(_VAGUE)
    else:
        picked = rng.sample(groups, min(len(groups), rng.randint(1, 2)))
        phrases: list[str] = []
        for colour, shape, items in picked:
            if kind == "wrong" and not phrases:  # the first phrase names something that is not there
                colour, shape = rng.choice(absent_kinds(scene)[:6])
            count = f"{len(items)} " if len(items) > 1 and rng.random() < 0.5 else ""
            phrases.append(f"{count}{colour} {plural(shape, len(items))}")
        text = " and ".join(phrases)
        if rng.random() < 0.3:
            text = text.title()
    return text + rng.choice(_SUFFIXES), kind


# --- reading facts back ---------------------------------------------------------------------------------------------
_POSITION_SYNONYMS = {
    "upper left": "top left",
    "upper right": "top right",
    "lower left": "bottom left",
    "lower right": "bottom right",
    "top middle": "top center",
    "bottom middle": "bottom center",
    "center left": "middle left",
    "center right": "middle right",
    "middle": "center",
}
_NUMBER = r"\d+|" + "|".join(NUMBER_WORDS) + r"|a single|single|only one"
_SIZE = r"(?:" + "|".join(SIZES) + r"|big|tiny|little)"
_MENTION = re.compile(
    rf"\b(?:(?P<num>{_NUMBER})\s+)?(?:{_SIZE}\s+)?(?P<colour>{'|'.join(COLOURS)})\s+(?:{_SIZE}\s+)?"
    rf"(?P<shape>{'|'.join(SHAPES)})(?:e?s)?\b"
)
_POSITION = re.compile(r"\b(" + "|".join(sorted([*POSITIONS, *_POSITION_SYNONYMS], key=len, reverse=True)) + r")\b")
_TOTAL = re.compile(rf"\b(?P<num>{_NUMBER})\s+(?:shapes?|objects?)\b")
_WORD = re.compile(r"\bword\s+[\"'“”‘’]?([A-Za-z]+)")


def _to_int(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    return 1 if text in ("a single", "single", "only one") else NUMBER_WORDS.index(text)


def extract_facts(caption: str) -> list[dict[str, Any]]:
    """The facts a caption states, in the grammar of `Scene.facts()`, without duplicates.

    A position attaches to the nearest preceding shape mention in its sentence (or, with none before it, the
    first one after it); a number directly before a mention states a count, and before "shapes" the total.
    """
    facts: list[dict[str, Any]] = []
    for word in _WORD.findall(caption):
        facts.append({"type": "word", "text": word.upper()})
    text = caption.lower().replace("-", " ")
    for sentence in re.split(r"[.;!?\n]+", text):
        for match in _TOTAL.finditer(sentence):
            facts.append({"type": "total", "count": _to_int(match.group("num"))})
        mentions = list(_MENTION.finditer(sentence))
        for m in mentions:
            facts.append({"type": "has", "colour": m.group("colour"), "shape": m.group("shape")})
            if m.group("num"):
                facts.append(
                    {
                        "type": "count",
                        "colour": m.group("colour"),
                        "shape": m.group("shape"),
                        "count": _to_int(m["num"]),
                    }
                )
        if not mentions:
            continue
        for p in _POSITION.finditer(sentence):
            before = [m for m in mentions if m.end() <= p.start()]
            owner = before[-1] if before else next(m for m in mentions if m.start() >= p.end())
            position = _POSITION_SYNONYMS.get(p.group(1), p.group(1))
            facts.append({"type": "at", "colour": owner["colour"], "shape": owner["shape"], "position": position})
    unique: dict[str, dict[str, Any]] = {fact_key(f): f for f in facts}
    return list(unique.values())


def fact_key(fact: dict[str, Any]) -> str:
    """A canonical string for a fact, for set comparisons."""
    return "|".join(f"{k}={fact[k]}" for k in sorted(fact))
