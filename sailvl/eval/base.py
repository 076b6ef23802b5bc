"""The one interface every benchmark implements: which columns it reads, how it asks, how it grades one answer and
how it turns the grades into its score.

Grading is per item and may consult a judge (async); aggregation is pure. A score is on 0-100 so benchmarks can be
averaged; the benchmark's own figures (MME's summed score, OCRBench's count, POPE's precision ...) travel beside it
in `raw`, and anything that makes a score not comparable with published ones is stated in `limitations`.
"""

from __future__ import annotations

import ast
import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sailvl.eval.items import BenchmarkFileError, Item
from sailvl.eval.judge import Judge

SHORT_TOKENS = 128  # a letter, yes/no, a word or phrase
LONG_TOKENS = 2048  # worked math and open-ended answers
CAPTION_TOKENS = 512

Grade = dict[str, Any]  # one item's grade, JSON-serialisable (kept beside its prediction for error analysis)
# How a reply was read, in every grade's "judge" key: by rule; by the judge; not even by the judge (its replies never
# parsed); or by rule alone where VLMEvalKit would have asked its judge (the suite has none).
RULE, JUDGE, JUDGE_FAILED, NEEDS_JUDGE = "rule", "judge", "judge_failed", "needs_judge"


def judge_use(read_by_rule: bool, judge_configured: bool, judge_answered: bool) -> str:
    if read_by_rule:
        return RULE
    if not judge_configured:
        return NEEDS_JUDGE
    return JUDGE if judge_answered else JUDGE_FAILED


@dataclass(frozen=True)
class Score:
    """A benchmark's result: `score` on 0-100, the metric's name, the benchmark's own figures and caveats."""

    score: float
    metric: str
    items: int
    raw: dict[str, Any] = field(default_factory=dict)
    limitations: tuple[str, ...] = ()


class Benchmark(ABC):
    """One benchmark: load its items with `columns`, ask `prompt`, `grade` each reply, `aggregate` the grades."""

    columns: ClassVar[tuple[str, ...]] = ("question", "answer")
    metric: ClassVar[str]
    max_tokens: ClassVar[int] = SHORT_TOKENS
    judged: ClassVar[bool] = False  # whether a configured judge changes how replies are read
    independent_items: ClassVar[bool] = False  # the score is a statistic of independent items (a bootstrap may
    # resample them), though not a mean of per-item values
    transforms_images: ClassVar[bool] = False  # whether `images` does real work (then it runs off the event loop)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def check(self, item: Item, source: str) -> None:
        """Raise BenchmarkFileError (naming source, row, column) if `item` cannot be scored; called at load time."""
        return None  # most benchmarks need no more than their columns

    @abstractmethod
    def prompt(self, item: Item) -> str:
        """The text the model is asked, beside the item's images."""

    def images(self, item: Item) -> tuple[bytes, ...]:
        """The images sent with the prompt (the item's own, unless the benchmark's model class alters them)."""
        return item.images

    def model_output(self, reply: str) -> str:
        """The prediction a reply becomes before it is written down: what VLMEvalKit's SAIL-VL model class does to
        its generations for this benchmark (nothing, for most)."""
        return reply

    @abstractmethod
    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        """How one prediction fares (as VLMEvalKit reads it back, `items.as_scored`); `judge` is None when the
        suite has none."""

    @abstractmethod
    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        """The score over every item (`grades[i]` belongs to `items[i]`)."""

    async def grade_all(self, items: Sequence[Item], predictions: Sequence[str], judge: Judge | None) -> list[Grade]:
        """Every item's grade (`predictions[i]` answers `items[i]`); a benchmark whose items depend on each other
        (circular groups) decides together which replies the judge sees."""
        # Grading is instant unless a judge is asked; the judge's client bounds its requests in flight.
        pairs = zip(items, predictions, strict=True)
        return list(await asyncio.gather(*(self.grade(item, prediction, judge) for item, prediction in pairs)))

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float] | None:
        """The values (0-1) of the independent units whose mean x 100 is the score, for its bootstrap interval;
        None when the score is not such a mean. Most scores are a mean over items."""
        return None


def answer_list(item: Item, source: str, column: str = "answer") -> list[str]:
    """The true answers of an item: a Python-style list of strings in the cell, or the cell itself (`nan` when the
    cell reads as missing, e.g. `None`: VLMEvalKit compares with `str(NaN)`)."""
    value = item.get(column)
    if value is None:
        return ["nan"]
    if not (value.startswith("[") and value.endswith("]")):
        return [value]
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise BenchmarkFileError(
            source, f"starts with '[' but is not a list of answers: {value[:80]!r}", row=item.row, column=column
        ) from None
    if not isinstance(parsed, list) or not parsed:
        raise BenchmarkFileError(source, f"expected a non-empty list of answers; found {value[:80]!r}", row=item.row)
    return [str(x) for x in parsed]


def need(item: Item, source: str, *columns: str) -> None:
    for column in columns:
        if item.get(column) is None:
            raise BenchmarkFileError(source, "is missing (this benchmark needs it)", row=item.row, column=column)


def percent(x: float) -> float:
    return 100.0 * x
