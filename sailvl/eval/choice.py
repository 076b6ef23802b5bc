"""Multiple-choice benchmarks (MMBench, MMStar, MMMU, SEEDBench, AI2D, RealWorldQA): accuracy of the option read
from each reply, with VLMEvalKit's circular evaluation for MMBench.

MMBench files hold each question several times with its options rotated (the k-th rotation of question i has index
i + k * 1,000,000); circular evaluation counts a question right only if every rotation is. A reply no rule can read
goes to the judge when the suite has one; otherwise it counts as wrong (VLMEvalKit's exact-matching policy), and the
number of such replies is reported. A judge that never names an option leaves a random one (of the options and Z),
as VLMEvalKit's does; here the draw is seeded by the item, so a rerun scores the same.

As in VLMEvalKit, an option whose text pandas reads as missing (`None`, `N/A` ...) does not exist: an item whose
right answer is such an option can only be scored wrong, and the score says how many there were.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections import defaultdict
from collections.abc import Sequence

from PIL import Image

from sailvl.eval import prompts
from sailvl.eval.base import RULE, Benchmark, Grade, Score, judge_use, need, percent
from sailvl.eval.extract import Z, extract_choice
from sailvl.eval.items import BenchmarkFileError, Item
from sailvl.eval.judge import Judge, match_option
from sailvl.eval.scorers import CIRCULAR_STRIDE, circular_accuracy, mean
from sailvl.eval.store import fingerprint


class MultipleChoice(Benchmark):
    metric = "accuracy"
    judged = True

    def __init__(self, name: str, *, circular: bool = False) -> None:
        super().__init__(name)
        self.circular = circular

    def choices(self, item: Item) -> dict[str, str]:
        return item.options

    def truth(self, item: Item) -> str:
        return (item.get("answer") or "").strip()  # a missing answer (read as NaN) matches no option

    def check(self, item: Item, source: str) -> None:
        choices = self.choices(item)
        if not choices:
            raise BenchmarkFileError(source, "has no options (expected columns A, B, ...)", row=item.row)
        truth = self.truth(item)
        if truth and not (len(truth) == 1 and "A" <= truth <= "Z"):
            raise BenchmarkFileError(
                source, f"must be an option letter (A, B, ...); found {item['answer']!r}", row=item.row, column="answer"
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
        if choice is not None or judge is None:
            use = judge_use(choice is not None, judge is not None, False)
            return {"choice": choice, "judged": False, "judge": use, "correct": choice == self.truth(item)}
        return await self._judged(item, prediction, judge)

    async def _judged(self, item: Item, prediction: str, judge: Judge) -> Grade:
        choices = self.choices(item)
        choice = await match_option(judge, item["question"], choices, prediction)
        use = judge_use(False, True, choice is not None)
        if choice is None:  # VLMEvalKit then draws one of the options or Z at random
            choice = random.Random(fingerprint(self.name, item.index)).choice([*choices, Z])
        return {"choice": choice, "judged": True, "judge": use, "correct": choice == self.truth(item)}

    async def grade_all(self, items: Sequence[Item], predictions: Sequence[str], judge: Judge | None) -> list[Grade]:
        """Circular questions are judged as VLMEvalKit's `prefetch_circular_group` does: a group any rotation of
        which the rule reads as a wrong option is wrong, and none of its replies goes to the judge; a group read
        right throughout is right; only the unread replies of the other groups go to the judge."""
        if not self.circular:
            return await super().grade_all(items, predictions, judge)
        grades = [await self.grade(item, prediction, None) for item, prediction in zip(items, predictions, strict=True)]
        groups: dict[int, list[int]] = defaultdict(list)
        for position, item in enumerate(items):
            groups[int(item.index) % CIRCULAR_STRIDE].append(position)
        ask = []
        for members in groups.values():
            members.sort(key=lambda p: int(items[p].index))
            read = [grades[p]["choice"] for p in members]
            decided = any(c is not None and c != self.truth(items[p]) for c, p in zip(read, members, strict=True))
            for p in members:
                if grades[p]["choice"] is None:
                    if decided:
                        grades[p]["judge"] = RULE  # the group is wrong whatever this reply says
                    elif judge is not None:
                        ask.append(p)
        if judge is not None:
            judged = await asyncio.gather(*(self._judged(items[p], predictions[p], judge) for p in ask))
            for p, grade in zip(ask, judged, strict=True):
                grades[p] = grade
        return grades

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
        unwinnable = sum(self.truth(item) not in self.choices(item) for item in items)
        raw: dict[str, object] = {"unmatched": unmatched, "refused": refused, "judged": judged}
        limitations: list[str] = []
        if unwinnable:
            raw["unwinnable"] = unwinnable
            limitations.append(
                f"{unwinnable} items' right option has text that reads as missing (e.g. 'None'): as in VLMEvalKit, "
                "that option does not exist and they count as wrong"
            )
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
    """MMMU: open questions become two options (the answer, "Other Answers"), as VLMEvalKit's `MMMU_preproc` does, and
    the first image is upscaled 2x, as SAIL-VL's model class does for MMMU. The score is the validation split's
    accuracy (VLMEvalKit's "Overall Acc (val)"); the dev split's is kept beside it."""

    OTHER = "Other Answers"
    REPORTED_SPLIT = "validation"
    transforms_images = True

    def choices(self, item: Item) -> dict[str, str]:
        options = item.options
        if "A" in options:
            return options
        answer = item.get("answer")  # an open answer that reads as missing leaves only "Other Answers"
        return ({"A": answer} if answer is not None else {}) | {"B": self.OTHER}

    def truth(self, item: Item) -> str:
        answer = (item.get("answer") or "").strip()
        return answer if len(answer) == 1 and answer.isupper() else "A"

    def check(self, item: Item, source: str) -> None:
        need(item, source, "question")
        if "A" in item.options:
            super().check(item, source)

    def images(self, item: Item) -> tuple[bytes, ...]:
        return (upscale(item.images[0]), *item.images[1:]) if item.images else ()

    def _reported(self, items: Sequence[Item], grades: Sequence[Grade]) -> tuple[list[Item], list[Grade]]:
        """The items of the split the score reports (all of them when the file has no split column)."""
        if not any(item.get("split") is not None for item in items):
            return list(items), list(grades)
        pairs = [(i, g) for i, g in zip(items, grades, strict=True) if i.get("split") == self.REPORTED_SPLIT]
        return [i for i, _ in pairs], [g for _, g in pairs]

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return super().units(*self._reported(items, grades))

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        reported = super().aggregate(*self._reported(items, grades))
        splits: dict[str, list[float]] = defaultdict(list)
        for item, grade in zip(items, grades, strict=True):
            if item.get("split") is not None:
                splits[str(item["split"])].append(float(grade["correct"]))
        raw = dict(reported.raw) | {"splits": {name: percent(mean(v)) for name, v in sorted(splits.items())}}
        limitations = reported.limitations
        if splits and self.REPORTED_SPLIT not in splits:
            limitations += (f"no {self.REPORTED_SPLIT} items: the score is 0, as VLMEvalKit reports the split alone",)
        return Score(reported.score, reported.metric, len(grades), raw, limitations)


def upscale(data: bytes, factor: int = 2) -> bytes:
    """The image `factor` times larger (bilinear), PNG-encoded."""
    with Image.open(io.BytesIO(data)) as image:
        bigger = image.convert("RGB").resize((image.width * factor, image.height * factor), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    bigger.save(out, format="PNG", compress_level=1)  # lossless, and fast: the server decodes it at once
    return out.getvalue()
