"""The metrics against values worked out by hand from each metric's definition."""

from __future__ import annotations

import json

import pytest

from sailvl.api.benchmarks import BENCHMARKS
from sailvl.eval.base import Score
from sailvl.eval.items import Item
from sailvl.eval.report import group_averages, summarize, termination_message
from sailvl.eval.scorers import (
    anls,
    binary_scores,
    circular_accuracy,
    fact_f1,
    hallusion_score,
    mme_score,
    ocrbench_hit,
    relaxed_accuracy,
    relaxed_correct,
    vqa_accuracy,
)
from sailvl.eval.vqa import ChartQA, OCRBench
from sailvl.eval.yesno import MME, POPE


@pytest.mark.parametrize(
    ("truths", "prediction", "expected"),
    [
        (["hello"], "hello", 1.0),
        (["Hello"], "  hello ", 1.0),  # case and surrounding space do not count
        (["hello"], "helo", 0.8),  # distance 1 over 5 characters
        (["hello"], "xyz", 0.0),  # distance 5 of 5: similarity 0
        (["abcd"], "ab", 0.5),  # similarity exactly at the threshold is kept (VLMEvalKit)
        (["abcd"], "a", 0.0),  # similarity 0.25 < 0.5: zero
        (["cat", "dog"], "dot", 2 / 3),  # the closest answer (dog, distance 1 of 3) counts
    ],
)
def test_anls(truths: list[str], prediction: str, expected: float) -> None:
    assert anls(truths, prediction) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reds", "prediction", "expected"),
    [
        # 2 "red" of 10: each red answer sees 1 other red (1/3), each blue sees 2 (2/3): (2/3 + 16/3) / 10
        (2, "red", 0.6),
        # 3 "red": a red answer sees 2 others (2/3), a blue sees 3 (1): (3 * 2/3 + 7) / 10
        (3, "red", 0.9),
        (4, "red", 1.0),
        (2, "Red.", 0.6),  # normalised like the official evaluation
        (2, "blue", 1.0),
        (2, "green", 0.0),
    ],
)
def test_vqa_accuracy_averages_over_the_ten_leave_one_out_subsets(reds: int, prediction: str, expected: float) -> None:
    answers = ["red"] * reds + ["blue"] * (10 - reds)
    assert vqa_accuracy(answers, prediction) == pytest.approx(expected)


def test_vqa_accuracy_reads_number_words() -> None:
    assert vqa_accuracy(["2"] * 10, "two") == 1.0


@pytest.mark.parametrize(
    ("truth", "prediction", "expected"),
    [
        ("100", "104", True),  # 4% off
        ("100", "105", True),  # exactly 5%
        ("100", "106", False),
        ("-50", "-52", True),
        ("12%", "0.12", True),  # percentages compare as fractions
        ("Yes", "yes", True),  # text: exact but for case
        ("Paris", "paris, France", False),
        ("0", "0.0", False),  # a zero answer is compared as text (pix2struct's definition)
    ],
)
def test_relaxed_correctness(truth: str, prediction: str, expected: bool) -> None:
    assert relaxed_correct(truth, prediction) is expected


async def test_chartqa_drops_a_final_period_and_takes_any_true_answer() -> None:
    item = Item("1", 1, (), {"question": "q", "answer": "['12', '13']"})
    chart = ChartQA("ChartQA_TEST")
    assert (await chart.grade(item, "12.", None))["score"] == 1.0
    assert (await chart.grade(item, "13.5", None))["score"] == 1.0  # within 5% of 13
    assert relaxed_accuracy(["12"], " 20 ") == 0.0


def test_ocrbench_hit() -> None:
    assert ocrbench_hit(["Hello"], "The text says HELLO world", "Regular Text Recognition")
    assert not ocrbench_hit(["Hello"], "Hallo", "Regular Text Recognition")
    assert ocrbench_hit(["x ^ 2"], "x^2", "Handwritten Mathematical Expression Recognition")


def test_ocrbench_score_is_the_count_over_ten_for_1000_items() -> None:
    items = [Item(str(i), i, (), {"category": "Doc-oriented VQA"}) for i in range(1000)]
    grades = [{"correct": i < 613} for i in range(1000)]
    score = OCRBench("OCRBench").aggregate(items, grades)
    assert score.raw["count"] == 613
    assert score.score == pytest.approx(61.3)
    assert score.limitations == ()


def test_mme_sums_accuracy_and_accuracy_plus_per_subtask() -> None:
    records = [
        ("color", "img1", True),
        ("color", "img1", True),
        ("color", "img2", True),
        ("color", "img2", False),  # color: accuracy 3/4 = 75, accuracy+ 1/2 = 50 -> 125
        ("OCR", "img3", True),
        ("OCR", "img3", True),  # OCR: 100 + 100 = 200
        ("code_reasoning", "img4", False),
        ("code_reasoning", "img4", True),  # code: 50 + 0 = 50
    ]
    mme = mme_score(records)
    assert mme.per_category == {"OCR": 200.0, "code_reasoning": 50.0, "color": 125.0}
    assert mme.perception == 325.0
    assert mme.cognition == 50.0


def test_mme_benchmark_score_maps_the_sum_onto_0_100() -> None:
    items, grades = [], []
    for i, (category, image, correct) in enumerate(
        [("color", "a", True), ("color", "a", True), ("OCR", "b", True), ("OCR", "b", False)]
    ):
        items.append(Item(str(i), i, (), {"category": category, "image_path": image, "answer": "Yes"}))
        grades.append({"extracted": "Yes" if correct else "No", "judged": False, "correct": correct})
    score = MME("MME").aggregate(items, grades)
    # color 200, OCR 50 + 0 = 50: 250 of a possible 400 over 2 subtasks -> 62.5 (the full benchmark divides by 28)
    assert score.raw["total"] == 250.0
    assert score.score == pytest.approx(62.5)
    assert any("2 of MME's 14 subtasks" in text for text in score.limitations)


def test_pope_f1_with_an_unreadable_answer() -> None:
    truths = ["Yes"] * 4 + ["No"] * 4
    extracted = ["Yes", "Yes", "Yes", "No", "Yes", "No", "No", "Unknown"]  # TP 3, FN 1, FP 1, TN 2, unknown 1
    b = binary_scores(truths, extracted)
    assert (b.precision, b.recall, b.f1) == (0.75, 0.75, 0.75)
    assert b.accuracy == 5 / 8


def test_pope_benchmark_counts_an_item_once_per_listed_category() -> None:
    items = [
        Item("1", 1, (), {"answer": "yes", "category": "random,popular"}),
        Item("2", 2, (), {"answer": "no", "category": "random"}),
    ]
    grades = [
        {"extracted": "Yes", "judged": False, "correct": True},
        {"extracted": "Yes", "judged": False, "correct": False},
    ]
    score = POPE("POPE").aggregate(items, grades)
    # rows: (random, Yes, Yes), (popular, Yes, Yes), (random, No, Yes): TP 2, FP 1 -> precision 2/3, recall 1
    assert score.raw["precision"] == pytest.approx(200 / 3)
    assert score.score == pytest.approx(100 * 0.8)
    assert score.raw["categories"] == {"popular": 100.0, "random": pytest.approx(100 * 2 / 3)}


def test_hallusion_scores() -> None:
    records = [
        ("chart", "0", "0", "0", True),
        ("chart", "0", "0", "1", True),
        ("chart", "0", "1", "0", False),
        ("chart", "0", "1", "1", True),
    ]
    h = hallusion_score(records)
    assert h.a_acc == 75.0  # 3 of 4 questions
    assert h.f_acc == 50.0  # figure 0 all right, figure 1 not
    assert h.q_acc == 50.0  # question 1 right on both figures, question 0 not


def test_circular_accuracy_needs_every_rotation_right() -> None:
    records = [(1, True), (1_000_001, True), (2, True), (1_000_002, False), (3, False)]
    assert circular_accuracy(records) == (pytest.approx(1 / 3), 3)


def test_fact_f1() -> None:
    s = fact_f1(["a", "b", "c"], ["a", "b", "d", "e"])
    assert (s.precision, s.recall) == (pytest.approx(2 / 3), 0.5)
    assert s.f1 == pytest.approx(4 / 7)
    assert fact_f1([], ["a"]).f1 == 0.0


def test_group_averages_and_overall_average() -> None:
    results = {"MMStar": 50.0, "MME": 70.0, "POPE": 80.0, "OCRBench": 60.0, "shapes_vqa": 100.0}
    assert group_averages(results) == {"generalVQA": 60.0, "ocrVQA": 60.0, "mathKnowledge": None, "hallucination": 80.0}
    summary = summarize({name: Score(value, "m", 10) for name, value in results.items()})
    assert summary["average"] == 72.0
    assert summary["counts"] == {"benchmarks": 5, "items": 50}


def test_termination_message_fits_4_kib_with_every_benchmark() -> None:
    scores = {name: Score(100 / 3, "m", 1) for name in BENCHMARKS}
    message = termination_message(summarize(scores))
    assert len(message.encode()) <= 4096
    decoded = json.loads(message)
    assert set(decoded) == {"results", "average", "groups"}
    assert decoded["results"]["MME"] == 33.3333
    with pytest.raises(ValueError, match="Kubernetes keeps 64"):
        termination_message(summarize(scores), limit=64)
