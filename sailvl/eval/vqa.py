"""Open-answer benchmarks: TextVQA (VQA accuracy), DocVQA and InfoVQA (ANLS), ChartQA (relaxed accuracy), OCRBench
(answers found, of 1000), MathVista (accuracy of the extracted answer) and MMVet (judge-graded correctness).
"""

from __future__ import annotations

import ast
import re
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
from sailvl.eval.extract import can_infer, extract_choice, normalize_vqa, numbers_in
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

    @staticmethod
    def measure(truths: Sequence[str], prediction: str) -> float:
        # SAIL-VL's model class drops a final period for ChartQA before scoring ("12." would miss "12").
        return relaxed_accuracy(truths, prediction[:-1] if prediction.endswith(".") else prediction)


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
    """Accuracy of the final answer: read by rule when the reply is bare (VLMEvalKit's prefetch), else extracted by
    the judge; without a judge, the option named or the last number stated (rounded to the item's precision)."""

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
        bare = _mathvista_correct(item, prediction)
        if bare:
            return {"extracted": prediction, "method": "prefetch", "judge": RULE, "correct": True}
        if judge is not None:
            extracted = await extract_mathvista(judge, item["question"], prediction)
            use = JUDGE if extracted else JUDGE_FAILED
            return {
                "extracted": extracted,
                "method": "judge",
                "judge": use,
                "correct": _mathvista_correct(item, extracted),
            }
        extracted = _rule_extract(item, prediction)
        return {
            "extracted": extracted,
            "method": "rule",
            "judge": NEEDS_JUDGE,
            "correct": _mathvista_correct(item, extracted),
        }

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["correct"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        accuracy = percent(mean(float(g["correct"]) for g in grades))
        methods = Counter(g["method"] for g in grades)
        caveats: tuple[str, ...] = ()
        if methods["rule"]:
            caveats = (
                f"no judge: {methods['rule']} verbose replies were read by rule (option named, else the last number); "
                "VLMEvalKit extracts them with a GPT judge",
            )
        return Score(accuracy, self.metric, len(grades), {"accuracy": accuracy, "methods": dict(methods)}, caveats)


def _choices(item: Item) -> dict[str, str]:
    options = ast.literal_eval(item["choices"])
    if not isinstance(options, list | tuple) or not options:
        raise ValueError("not a list")
    return {chr(65 + i): str(option) for i, option in enumerate(options)}


def _mathvista_correct(item: Item, response: str) -> bool:
    """VLMEvalKit's `post_check`: the option read from the response, or the response as an int / float / string."""
    answer_type = item["answer_type"]
    try:
        if item["question_type"] == "multi_choice":
            return can_infer(response, _choices(item)) == item["answer_option"].strip()
        if answer_type == "integer":
            return int(response) == int(item["answer"])
        if answer_type == "float":
            return float(response) == float(item["answer"])
    except ValueError:
        return False
    return response.strip() == item["answer"].strip()


def _rule_extract(item: Item, prediction: str) -> str:
    if item["question_type"] == "multi_choice":
        choices = _choices(item)
        found = extract_choice(prediction, choices)
        if found is None:  # a verbose reply: the one option whose text it states as a word of its own
            lowered = prediction.lower()
            named = [k for k, v in choices.items() if re.search(rf"(?<!\w){re.escape(v.lower())}(?!\w)", lowered)]
            found = named[0] if len(named) == 1 else None
        return found or ""
    if item["answer_type"] in ("integer", "float"):
        numbers = numbers_in(prediction)
        if not numbers:
            return ""
        if item["answer_type"] == "integer":
            return str(round(float(numbers[-1])))
        precision = int(float(item.get("precision") or 2))
        return str(round(float(numbers[-1]), precision))
    return prediction.strip()


class MMVet(Benchmark):
    """Mean correctness (0-1) of open answers, graded by the judge against the reference with VLMEvalKit's
    prompt. Without a judge: the share of the reference's <AND> parts (or any <OR> part) the reply contains,
    after VQA normalisation, which credits short factual answers only."""

    metric = "correctness"
    max_tokens = LONG_TOKENS
    judged = True

    def prompt(self, item: Item) -> str:
        return prompts.as_is(item)

    async def grade(self, item: Item, prediction: str, judge: Judge | None) -> Grade:
        if judge is not None:
            score = await grade_mmvet(judge, item["question"], item["answer"], prediction)
            use = JUDGE_FAILED if score is None else JUDGE
            return {
                "score": 0.0 if score is None else score,
                "method": "judge",
                "judge": use,
                "unparsed": score is None,
            }
        return {
            "score": mmvet_rule(item["answer"], prediction),
            "method": "rule",
            "judge": NEEDS_JUDGE,
            "unparsed": False,
        }

    def units(self, items: Sequence[Item], grades: Sequence[Grade]) -> list[float]:
        return [float(g["score"]) for g in grades]

    def aggregate(self, items: Sequence[Item], grades: Sequence[Grade]) -> Score:
        value = percent(mean(g["score"] for g in grades))
        raw: dict[str, object] = {"correctness": value, "unparsed": sum(g["unparsed"] for g in grades)}
        caveats: tuple[str, ...] = ()
        if any(g["method"] == "rule" for g in grades):
            caveats = ("no judge: graded by finding the reference's parts in the reply, not comparable with a judge's",)
        return Score(value, self.metric, len(grades), raw, caveats)


def mmvet_rule(truth: str, prediction: str) -> float:
    reply = f" {normalize_vqa(prediction)} "
    if "<OR>" in truth:
        return 1.0 if any(f" {normalize_vqa(p)} " in reply for p in truth.split("<OR>") if p.strip()) else 0.0
    parts = [p for p in truth.split("<AND>") if p.strip()]
    return mean(float(f" {normalize_vqa(p)} " in reply) for p in parts)
