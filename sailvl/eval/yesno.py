"""Yes/no benchmarks: MME (accuracy + accuracy+ per subtask, summed), HallusionBench (aAcc, fAcc, qAcc) and POPE
(F1 of "yes"), each reply read as VLMEvalKit reads it: yes or no must occur, not both; otherwise the judge matches it
when the suite has one, and it counts as wrong when not.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence

from sailvl.eval import prompts
from sailvl.eval.base import Benchmark, Grade, Score, judge_use, need, percent
from sailvl.eval.extract import yes_no
from sailvl.eval.items import BenchmarkFileError, Item
from sailvl.eval.judge import Judge, match_yes_no
from sailvl.eval.scorers import binary_scores, hallusion_score, mean, mme_score


class YesNo(Benchmark):
    metric = "accuracy"
    judged = True

    def __init__(self, name: str, prompt: Callable[[Item], str]) -> None:
        super().__init__(name)
        self._prompt = prompt

    def truth(self, item: Item) -> str:
        return item["answer"].strip().capitalize()

    def check(self, item: Item, source: str) -> None:
        if self.truth(item) not in ("Yes", "No"):
            found = item["answer"]
            raise BenchmarkFileError(source, f"must be Yes or No; found {found!r}", row=item.row, column="answer")

    def prompt(self, item: Item) -> str:
        return self._prompt(item)

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        answer, judged = yes_no(prediction), False
        by_rule = answer != "Unknown"
        if answer == "Unknown" and judge is not None:
            answer, judged = await match_yes_no(judge, item["question"], prediction), True
        use = judge_use(by_rule, judge is not None, answer != "Unknown")
        return {"extracted": answer, "judged": judged, "judge": use, "correct": answer == self.truth(item)}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float] | None:
        return [float(g["correct"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        accuracy = percent(mean(float(g["correct"]) for g in grades))
        return Score(accuracy, self.metric, len(grades), {"accuracy": accuracy} | _unread(grades), _caveats(grades))


def _unread(grades: Sequence[Grade]) -> dict[str, int]:
    return {"unknown": sum(g["extracted"] == "Unknown" for g in grades), "judged": sum(g["judged"] for g in grades)}


def _caveats(grades: Sequence[Grade]) -> tuple[str, ...]:
    unknown = sum(g["extracted"] == "Unknown" for g in grades)
    if unknown and not any(g["judged"] for g in grades):
        return (f"{unknown} replies said neither yes nor no and count as wrong (VLMEvalKit has a judge match them)",)
    return ()


class MME(YesNo):
    """Score: perception + cognition (max 2800) / 28, over the subtasks present; the raw sum is kept."""

    metric = "perception+cognition/28"

    def __init__(self, name: str) -> None:
        super().__init__(name, prompts.mme)

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> None:
        return None  # per-category accuracy + accuracy+ (over image pairs), summed: not a mean over units

    def check(self, item: Item, source: str) -> None:
        need(item, source, "category")
        super().check(item, source)

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        records = [
            (item["category"], _image_key(item), bool(g["correct"])) for item, g in zip(items, grades, strict=True)
        ]
        mme = mme_score(records)
        subtasks = len(mme.per_category)
        raw: dict[str, object] = {"total": mme.total, "perception": mme.perception, "cognition": mme.cognition}
        raw["subtasks"] = subtasks
        raw["categories"] = mme.per_category
        raw |= _unread(grades)
        caveats = _caveats(grades)
        if subtasks != 14:
            caveats += (f"{subtasks} of MME's 14 subtasks present: the sum is not comparable with published ones",)
        # Each subtask contributes at most 200 (accuracy + accuracy+), so 2 per subtask maps the sum onto 0-100.
        return Score(mme.total / (2 * subtasks) if subtasks else 0.0, self.metric, len(grades), raw, caveats)


def _image_key(item: Item) -> str:
    # The two questions of an MME image share its image_path; without one, the image bytes pair them.
    path = item.get("image_path")
    return path if path is not None else hashlib.sha1(b"".join(item.images)).hexdigest()


class HallusionBench(YesNo):
    """Score: the mean of aAcc (questions), fAcc (figures) and qAcc (questions across figures), VLMEvalKit's
    overall figure. Set, figure and question ids are the 4th to 6th `_`-separated fields of the index."""

    metric = "mean(aAcc,fAcc,qAcc)"

    def __init__(self, name: str) -> None:
        super().__init__(name, prompts.hallusion)

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> None:
        return None  # the mean of three accuracies over different groupings

    def check(self, item: Item, source: str) -> None:
        need(item, source, "l2-category")
        if len(item.index.split("_")) < 6:
            raise BenchmarkFileError(
                source,
                f"must read <a>_<b>_<c>_<set>_<figure>_<question> (HallusionBench's ids); found {item.index!r}",
                row=item.row,
                column="index",
            )
        super().check(item, source)

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        records = []
        for item, grade in zip(items, grades, strict=True):
            parts = item.index.split("_")
            records.append((item["l2-category"], parts[3], parts[4], parts[5], bool(grade["correct"])))
        h = hallusion_score(records)
        raw = {"aAcc": h.a_acc, "fAcc": h.f_acc, "qAcc": h.q_acc} | _unread(grades)
        return Score((h.a_acc + h.f_acc + h.q_acc) / 3, self.metric, len(grades), raw, _caveats(grades))


class POPE(YesNo):
    """Score: F1 of "yes" over every item, counted once per category it lists (VLMEvalKit explodes
    comma-separated categories); accuracy, precision, recall and per-category F1 are kept."""

    metric = "F1"
    independent_items = True

    def __init__(self, name: str, prompt: Callable[[Item], str] = prompts.as_is) -> None:
        super().__init__(name, prompt)

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> None:
        return None  # F1 is not a mean over items: resampled as a statistic of independent items

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        rows: list[tuple[str | None, str, str]] = []
        for item, grade in zip(items, grades, strict=True):
            categories = (item.get("category") or "").split(",")
            rows += [(c.strip() or None, self.truth(item), grade["extracted"]) for c in categories]
        overall = binary_scores([r[1] for r in rows], [r[2] for r in rows])
        by: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for category, truth, extracted in rows:
            if category is not None:
                by[category].append((truth, extracted))
        per_category = {
            c: percent(binary_scores([t for t, _ in v], [e for _, e in v]).f1) for c, v in sorted(by.items())
        }
        raw = {
            "f1": percent(overall.f1),
            "accuracy": percent(overall.accuracy),
            "precision": percent(overall.precision),
            "recall": percent(overall.recall),
            "categories": per_category,
        } | _unread(grades)
        return Score(percent(overall.f1), self.metric, len(grades), raw, _caveats(grades))
