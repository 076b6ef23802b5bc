"""Multiple-choice benchmarks (MMBench, MMStar, MMMU, SEEDBench, AI2D, RealWorldQA): accuracy of the option read
from each reply, with VLMEvalKit's circular evaluation for MMBench.

MMBench files hold each question several times with its options rotated (the k-th rotation of question i has index
i + k * 1,000,000); circular evaluation counts a question right only if every rotation is. A reply no rule can read
goes to the judge when the suite has one; otherwise it counts as wrong (VLMEvalKit's exact-matching policy), and the
number of such replies is reported.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence

from PIL import Image

from sailvl.eval import prompts
from sailvl.eval.base import Benchmark, Grade, Score, judge_use, need, percent
from sailvl.eval.extract import Z, extract_choice
from sailvl.eval.items import BenchmarkFileError, Item
from sailvl.eval.judge import Judge, match_option
from sailvl.eval.scorers import CIRCULAR_STRIDE, circular_accuracy, mean


class MultipleChoice(Benchmark):
    metric = "accuracy"
    judged = True

    def __init__(self, name: str, *, circular: bool = False) -> None:
        super().__init__(name)
        self.circular = circular

    def choices(self, item: Item) -> dict[str, str]:
        return item.options

    def truth(self, item: Item) -> str:
        return item["answer"].strip()

    def check(self, item: Item, source: str) -> None:
        choices = self.choices(item)
        if not choices:
            raise BenchmarkFileError(source, "has no options (expected columns A, B, ...)", row=item.row)
        if self.truth(item) not in choices:
            raise BenchmarkFileError(
                source, f"must be one of the option letters {list(choices)}; found {item['answer']!r}", row=item.row
            )
        if self.circular and not item.index.isdigit():
            raise BenchmarkFileError(
                source, f"must be an integer for circular evaluation; found {item.index!r}", row=item.row
            )

    def prompt(self, item: Item) -> str:
        return prompts.multiple_choice(item)

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        choices = self.choices(item)
        choice = extract_choice(prediction, choices)
        by_rule, judged = choice is not None, False
        if choice is None and judge is not None:
            choice, judged = await match_option(judge, item["question"], choices, prediction), True
        use = judge_use(by_rule, judge is not None, choice is not None)
        return {"choice": choice, "judged": judged, "judge": use, "correct": choice == self.truth(item)}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        if not self.circular:
            return [float(g["correct"]) for g in grades]
        groups: dict[int, list[bool]] = defaultdict(list)  # a question with all its rotations is one unit
        for item, grade in zip(items, grades, strict=True):
            groups[int(item.index) % CIRCULAR_STRIDE].append(bool(grade["correct"]))
        return [float(all(v)) for _, v in sorted(groups.items())]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        unmatched = sum(g["choice"] is None for g in grades)
        refused = sum(g["choice"] == Z for g in grades)
        judged = sum(g["judged"] for g in grades)
        raw: dict[str, object] = {"unmatched": unmatched, "refused": refused, "judged": judged}
        limitations: list[str] = []
        if self.circular:
            records = [(int(item.index), bool(g["correct"])) for item, g in zip(items, grades, strict=True)]
            accuracy, questions = circular_accuracy(records)
            categories = _circular_categories(items, records)
            raw |= {"questions": questions, "rotations": len(records), "categories": categories}
            if questions == len(records):
                limitations.append("the file holds no rotated copies, so this is single-pass accuracy, not circular")
        else:
            accuracy = mean(float(g["correct"]) for g in grades)
            raw |= {"questions": len(grades), "categories": _categories(items, grades)}
        raw["accuracy"] = percent(accuracy)
        if unmatched and not judged:
            limitations.append(
                f"{unmatched} replies named no option and count as wrong (VLMEvalKit has a judge match them)"
            )
        return Score(percent(accuracy), self.metric, len(grades), raw, tuple(limitations))


def _categories(items: Sequence[Item], grades: Sequence[Grade]) -> dict[str, float]:
    by: dict[str, list[float]] = defaultdict(list)
    for item, grade in zip(items, grades, strict=True):
        for column in ("category", "l2-category"):
            if item.get(column) is not None:
                by[f"{column}/{item[column]}"].append(float(grade["correct"]))
    return {name: percent(mean(v)) for name, v in sorted(by.items())}


def _circular_categories(items: Sequence[Item], records: Sequence[tuple[int, bool]]) -> dict[str, float]:
    main = {int(item.index): item for item in items if int(item.index) < CIRCULAR_STRIDE}
    groups: dict[int, list[bool]] = defaultdict(list)
    for index, correct in records:
        groups[index % CIRCULAR_STRIDE].append(correct)
    by: dict[str, list[float]] = defaultdict(list)
    for key, results in groups.items():
        item = main.get(key)
        for column in ("category", "l2-category"):
            if item is not None and item.get(column) is not None:
                by[f"{column}/{item[column]}"].append(float(all(results)))
    return {name: percent(mean(v)) for name, v in sorted(by.items())}


class MMMU(MultipleChoice):
    """MMMU: open questions become two options (the answer, "Other Answers"), as VLMEvalKit's `MMMU_preproc` does,
    and the first image is upscaled 2x, as SAIL-VL's model class does for MMMU."""

    OTHER = "Other Answers"
    transforms_images = True

    def choices(self, item: Item) -> dict[str, str]:
        options = item.options
        return options if "A" in options else {"A": item["answer"], "B": self.OTHER}

    def truth(self, item: Item) -> str:
        answer = item["answer"].strip()
        return answer if len(answer) == 1 and answer.isupper() else "A"

    def check(self, item: Item, source: str) -> None:
        need(item, source, "question", "answer")
        if "A" in item.options:
            super().check(item, source)

    def images(self, item: Item) -> tuple[bytes, ...]:
        return (upscale(item.images[0]), *item.images[1:]) if item.images else ()


def upscale(data: bytes, factor: int = 2) -> bytes:
    """The image `factor` times larger (bilinear), PNG-encoded."""
    with Image.open(io.BytesIO(data)) as image:
        bigger = image.convert("RGB").resize((image.width * factor, image.height * factor), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    bigger.save(out, format="PNG", compress_level=1)  # lossless, and fast: the server decodes it at once
    return out.getvalue()
