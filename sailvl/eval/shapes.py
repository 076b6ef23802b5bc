"""The synthetic benchmarks over `synthetic://shapes` images, whose ground truth is exact: captions scored by fact
F1, multiple choice, counting, reading a word, and POPE-style yes/no. Prompts are the generator's own
(`prompt_of`), the same the SFT conversations use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sailvl.data.synthetic import extract_facts, fact_key
from sailvl.data.synthetic.benchmarks import prompt_of
from sailvl.eval.base import CAPTION_TOKENS, Benchmark, Grade, Score, percent
from sailvl.eval.choice import MultipleChoice
from sailvl.eval.extract import normalize_vqa, numbers_in
from sailvl.eval.items import BenchmarkFileError, Item
from sailvl.eval.judge import Judge
from sailvl.eval.scorers import fact_f1, mean
from sailvl.eval.yesno import POPE


def _row(item: Item) -> dict[str, Any]:
    return dict(item.fields)


class ShapesCaption(Benchmark):
    """Fact F1 per caption (DESIGN §3): recall of the image's true facts (shapes, colours, counts, positions, the
    word) and precision of the facts the caption states, read back by the generator's own fact grammar."""

    metric = "fact_f1"
    columns = ("question", "facts")
    max_tokens = CAPTION_TOKENS

    def check(self, item: Item, source: str) -> None:
        try:
            facts = json.loads(item["facts"])
            [fact_key(f) for f in facts]
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise BenchmarkFileError(
                source, f"expected a JSON list of fact objects ({exc})", row=item.row, column="facts"
            ) from None

    def prompt(self, item: Item) -> str:
        return prompt_of(self.name, _row(item))

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        truth = [fact_key(f) for f in json.loads(item["facts"])]
        stated = [fact_key(f) for f in extract_facts(prediction)]
        s = fact_f1(stated, truth)
        return {"precision": s.precision, "recall": s.recall, "f1": s.f1, "stated": len(stated)}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["f1"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        raw = {key: percent(mean(g[key] for g in grades)) for key in ("f1", "precision", "recall")}
        return Score(raw["f1"], self.metric, len(grades), raw)


class ShapesChoice(MultipleChoice):
    def prompt(self, item: Item) -> str:
        return prompt_of(self.name, _row(item))


class ShapesExact(Benchmark):
    """Accuracy of an exact answer: the count (the first number stated) or the word (a whole word of the reply)."""

    metric = "accuracy"

    def prompt(self, item: Item) -> str:
        return prompt_of(self.name, _row(item))

    def read(self, prediction: str) -> str | None:
        numbers = numbers_in(prediction)
        return numbers[0] if numbers else None

    def correct(self, item: Item, prediction: str) -> bool:
        return self.read(prediction) == item["answer"].strip()

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        return {"read": self.read(prediction), "correct": self.correct(item, prediction)}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["correct"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        accuracy = percent(mean(float(g["correct"]) for g in grades))
        return Score(accuracy, self.metric, len(grades), {"accuracy": accuracy})


class ShapesWord(ShapesExact):
    def read(self, prediction: str) -> str | None:
        return normalize_vqa(prediction) or None

    def correct(self, item: Item, prediction: str) -> bool:
        word = normalize_vqa(item["answer"])
        return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", normalize_vqa(prediction)) is not None


class ShapesPOPE(POPE):
    def __init__(self, name: str) -> None:
        super().__init__(name, lambda item: prompt_of(name, _row(item)))
