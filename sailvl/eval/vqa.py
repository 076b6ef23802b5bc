"""Open-answer benchmarks: TextVQA (VQA accuracy), DocVQA and InfoVQA (ANLS), ChartQA (relaxed accuracy), OCRBench
(answers found, of 1000), MathVista (accuracy of the extracted answer) and MMVet (judge-graded correctness).
"""

from __future__ import annotations

import ast
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from sailvl.eval import prompts
from sailvl.eval.base import (
    JUDGE,
    JUDGE_FAILED,
    LONG_TOKENS,
    NEEDS_JUDGE,
    RULE,
    Benchmark,
    Grade,
    Score,
    answer_list,
    need,
    percent,
)
from sailvl.eval.extract import can_infer
from sailvl.eval.items import BenchmarkFileError, Item
from sailvl.eval.judge import Judge, extract_mathvista, grade_mmvet
from sailvl.eval.scorers import OCRBENCH_MATH, anls, mean, ocrbench_hit, relaxed_accuracy, vqa_accuracy


class ShortAnswer(Benchmark):
    """A word or phrase, scored against every true answer by `measure` and averaged over items."""

    def check(self, item: Item, source: str) -> None:
        answer_list(item, source)

    def prompt(self, item: Item) -> str:
        return prompts.short_answer(item)

    @staticmethod
    @abstractmethod
    def measure(truths: Sequence[str], prediction: str) -> float:
        """One item's score in [0, 1]."""

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        return {"score": self.measure(answer_list(item, self.name), prediction)}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["score"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        value = percent(mean(g["score"] for g in grades))
        return Score(value, self.metric, len(grades), {self.metric: value})


class TextVQA(ShortAnswer):
    metric = "vqa_accuracy"
    measure = staticmethod(vqa_accuracy)


class DocumentVQA(ShortAnswer):
    """DocVQA and InfoVQA."""

    metric = "anls"
    measure = staticmethod(anls)


class ChartQA(ShortAnswer):
    metric = "relaxed_accuracy"
    measure = staticmethod(relaxed_accuracy)

    def model_output(self, reply: str) -> str:
        # VLMEvalKit's SAIL-VL model class drops a final period for ChartQA ("12." would miss "12").
        return reply[:-1] if reply.endswith(".") else reply


class OCRBench(Benchmark):
    """Score: answers found / items x 100, i.e. OCRBench's count out of 1000 divided by 10; the count is kept."""

    metric = "count/10"
    columns = ("question", "answer", "category")
    GROUPS: ClassVar[dict[str, str]] = {
        "Regular Text Recognition": "Text Recognition",
        "Irregular Text Recognition": "Text Recognition",
        "Artistic Text Recognition": "Text Recognition",
        "Handwriting Recognition": "Text Recognition",
        "Digit String Recognition": "Text Recognition",
        "Non-Semantic Text Recognition": "Text Recognition",
        "Scene Text-centric VQA": "Scene Text-centric VQA",
        "Doc-oriented VQA": "Doc-oriented VQA",
        "Key Information Extraction": "Key Information Extraction",
        OCRBENCH_MATH: OCRBENCH_MATH,
    }

    def check(self, item: Item, source: str) -> None:
        answer_list(item, source)

    def prompt(self, item: Item) -> str:
        return prompts.short_answer(item)

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        return {"correct": ocrbench_hit(answer_list(item, self.name), prediction, item["category"])}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["correct"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        count = sum(bool(g["correct"]) for g in grades)
        groups: Counter[str] = Counter()
        for item, grade in zip(items, grades, strict=True):
            groups[self.GROUPS.get(item["category"], item["category"])] += int(grade["correct"])
        value = percent(count / len(grades)) if grades else 0.0
        caveats: tuple[str, ...] = ()
        if len(grades) != 1000:
            caveats = (f"{len(grades)} items, not OCRBench's 1000: the count is not comparable",)
        return Score(value, self.metric, len(grades), {"count": count, "groups": dict(sorted(groups.items()))}, caveats)


class MathVista(Benchmark):
    """Accuracy of the final answer, as VLMEvalKit's `MathVista_auxeval` and `post_check` read it: a reply the rule
    reads (an option for multiple choice; for numbers, a reply that *is* the right int or float) is taken as it is;
    every other reply goes to the judge, whose extraction is checked the same way. Without a judge those replies
    score 0 (what VLMEvalKit gives when its judge answers nothing) and the score says so.

    VLMEvalKit's quirks are kept: free-form text and list answers never count as right (its check compares them with
    the string 'None'), and a right answer of 0 is not taken by the rule (0 is falsy) but left to the judge."""

    metric = "accuracy"
    columns = ("question", "answer", "question_type", "answer_type")
    max_tokens = LONG_TOKENS
    judged = True

    def check(self, item: Item, source: str) -> None:
        if item["question_type"] == "multi_choice":
            need(item, source, "choices", "answer_option")
            try:
                _choices(item)
            except (ValueError, SyntaxError, TypeError):
                found = item["choices"][:80]
                raise BenchmarkFileError(
                    source, f"expected a list of options; found {found!r}", row=item.row, column="choices"
                ) from None

    def prompt(self, item: Item) -> str:
        return prompts.as_is(item)

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        prefetched = post_check(item, prediction, prefetch=True)
        if prefetched:
            correct = bool(post_check(item, str(prefetched), prefetch=False))
            return {"extracted": str(prefetched), "method": "prefetch", "judge": RULE, "correct": correct}
        if judge is None:
            return {"extracted": "", "method": "none", "judge": NEEDS_JUDGE, "correct": False}
        extracted = await extract_mathvista(judge, item["question"], prediction)
        use = JUDGE if extracted else JUDGE_FAILED
        correct = bool(post_check(item, extracted, prefetch=False))
        return {"extracted": extracted, "method": "judge", "judge": use, "correct": correct}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["correct"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        accuracy = percent(mean(float(g["correct"]) for g in grades))
        methods = Counter(g["method"] for g in grades)
        caveats: tuple[str, ...] = ()
        if methods["none"]:
            caveats = (
                f"no judge: {methods['none']} replies the rule cannot read score 0; VLMEvalKit extracts them with "
                "its judge (it refuses to score MathVista without one)",
            )
        return Score(accuracy, self.metric, len(grades), {"accuracy": accuracy, "methods": dict(methods)}, caveats)


def _choices(item: Item) -> dict[str, str]:
    options = ast.literal_eval(item["choices"])
    if not isinstance(options, list | tuple) or not options:
        raise ValueError("not a list")
    return {chr(65 + i): str(option) for i, option in enumerate(options)}


def post_check(item: Item, response: str, *, prefetch: bool) -> str | int | float | bool | None:
    """VLMEvalKit's `post_check`. With `prefetch` (the model's reply): for multiple choice the option the reply names
    (right or not), else the reply itself when it is exactly the right int or float; falsy when it is not.
    Without (the judge's extraction): whether it is right."""
    truth = item.get("answer") or "nan"  # an answer that reads as missing is NaN in VLMEvalKit
    answer: object = truth
    result: object = None
    try:
        if item["question_type"] == "multi_choice":
            answer = item["answer_option"].strip()
            result = can_infer(response, _choices(item))
            if prefetch:
                return result
        elif item["answer_type"] == "integer":
            result, answer = int(response), int(truth)
        elif item["answer_type"] == "float":
            result, answer = float(response), float(truth)
        else:  # VLMEvalKit compares str(None) with the answer: free-form and list answers never match
            result, answer = str(result), str(answer)
    except ValueError:
        pass
    if result == answer:
        return result if prefetch else True  # type: ignore[return-value]
    return False


class MMVet(Benchmark):
    """Mean correctness (0-1) of open answers, graded by the judge against the reference with VLMEvalKit's prompt
    (five tries; a judge that never answers with a score gives 0.0, as VLMEvalKit's does). There is no rule: without
    a judge every item scores 0 and the score says it is judge-free (VLMEvalKit refuses to score MMVet then)."""

    metric = "correctness"
    max_tokens = LONG_TOKENS
    judged = True

    def prompt(self, item: Item) -> str:
        return prompts.as_is(item)

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        if judge is None:
            return {"score": 0.0, "method": "none", "judge": NEEDS_JUDGE, "unparsed": False}
        score = await grade_mmvet(judge, item["question"], item["answer"], prediction)
        use = JUDGE_FAILED if score is None else JUDGE
        return {"score": 0.0 if score is None else score, "method": "judge", "judge": use, "unparsed": score is None}

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["score"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        value = percent(mean(g["score"] for g in grades))
        raw: dict[str, object] = {"correctness": value, "unparsed": sum(g["unparsed"] for g in grades)}
        caveats: tuple[str, ...] = ()
        if any(g["method"] == "none" for g in grades):
            caveats = ("no judge: MMVet is graded by a judge only, so every item scores 0",)
        return Score(value, self.metric, len(grades), raw, caveats)
