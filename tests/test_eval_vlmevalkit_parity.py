"""Side by side with VLMEvalKit: for every paper benchmark, hard replies (wrapped in sentences, option text for
letters, lower-case letters, `\\boxed{}`, refusals, blanks, `None`, units, percentages, trailing periods, yes-and-no
...) with the verdict VLMEvalKit's own code gives next to ours, and the benchmark's reported score on the whole table.

How the expected verdicts were obtained (`tests/data/vlmevalkit/<benchmark>.json`, field `obtained`): VLMEvalKit's
unmodified `evaluate()` for the benchmark, at the commit `sailvl.eval.provenance.VLMEVALKIT_COMMIT`, run on a
prediction `.xlsx` holding these replies, in exact-matching mode (no judge; for MathVista and MMVet, which refuse to
run without one, a judge whose every call fails). `needs_judge` is VLMEvalKit's decision to hand a reply to its judge.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sailvl.eval import registry
from sailvl.eval.base import NEEDS_JUDGE, Grade
from sailvl.eval.items import NA_VALUES, Item, as_scored
from sailvl.eval.provenance import VLMEVALKIT_COMMIT

DATA = Path(__file__).with_name("data") / "vlmevalkit"
TABLES = {path.stem: json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))}
MCQ = ("MMBench_DEV_EN", "MMBench_DEV_EN_V11", "MMStar", "SEEDBench_IMG", "AI2D_TEST", "RealWorldQA", "MMMU_DEV_VAL")
YES_NO = ("MME", "POPE", "HallusionBench")
OPEN = ("TextVQA_VAL", "DocVQA_VAL", "InfoVQA_VAL", "ChartQA_TEST", "OCRBench")


def _item(fields: dict[str, Any]) -> Item:
    """An item as `sailvl.eval.items` reads it from a TSV: a cell that pandas reads as missing is absent."""
    cells = {k: str(v) for k, v in fields.items() if k != "index" and str(v) not in NA_VALUES}
    return Item(index=str(fields["index"]), row=0, images=(), fields=cells)


def _graded(name: str) -> tuple[list[dict[str, Any]], list[Item], list[Grade]]:
    table = TABLES[name]
    benchmark = registry.get(name)
    cases = table["cases"]
    items = [_item(c["item"]) for c in cases]
    for item in items:
        benchmark.check(item, name)  # VLMEvalKit scores every one of these items; none may be refused
    # The tables hold predictions as VLMEvalKit's .xlsx holds them: after the model class, before reading back.
    predictions = [as_scored(c["prediction"]) for c in cases]
    grades = asyncio.run(benchmark.grade_all(items, predictions, None))
    return cases, items, grades


def test_the_tables_are_of_the_pinned_commit_and_cover_every_paper_benchmark() -> None:
    assert {t["vlmevalkit_commit"] for t in TABLES.values()} == {VLMEVALKIT_COMMIT}
    paper = [n for n in registry.REGISTRY if not n.startswith("shapes_")]
    assert sorted(TABLES) == sorted(paper)
    assert all(len(t["cases"]) >= 35 for t in TABLES.values()), {n: len(t["cases"]) for n, t in TABLES.items()}


@pytest.mark.parametrize("name", list(TABLES))
def test_a_reply_reads_back_as_vlmevalkit_scores_it(name: str) -> None:
    """Through VLMEvalKit's .xlsx round trip: blank, `None`, `N/A` ... become `nan`."""
    for case in TABLES[name]["cases"]:
        scored = case["vlmevalkit"].get("prediction_as_scored")
        if scored is not None:
            assert as_scored(case["prediction"]) == scored, case["case"]


@pytest.mark.parametrize("name", MCQ)
def test_multiple_choice_reads_each_reply_as_vlmevalkit_does(name: str) -> None:
    cases, _, grades = _graded(name)
    wrong = []
    for case, grade in zip(cases, grades, strict=True):
        expected = case["vlmevalkit"]
        ours = {"extracted": grade["choice"], "needs_judge": grade["choice"] is None}
        theirs = {"extracted": expected["extracted"], "needs_judge": expected["needs_judge"]}
        if "group_hit" not in expected:  # circular benchmarks score groups, below
            ours["hit"], theirs["hit"] = int(grade["correct"]), expected["hit"]
        if ours != theirs:
            wrong.append((case["case"], case["prediction"], ours, theirs))
    assert wrong == [], "\n".join(map(str, wrong))


@pytest.mark.parametrize("name", ["MMBench_DEV_EN", "MMBench_DEV_EN_V11"])
def test_circular_groups_are_scored_and_judged_as_vlmevalkit_does(name: str) -> None:
    cases, items, grades = _graded(name)
    groups: dict[int, dict[str, Any]] = {}
    for case, item, grade in zip(cases, items, grades, strict=True):
        group = groups.setdefault(int(item.index) % 1_000_000, {"correct": [], "needs_judge": False, "theirs": None})
        group["correct"].append(grade["correct"])
        group["needs_judge"] |= grade["judge"] == NEEDS_JUDGE
        group["theirs"] = (case["vlmevalkit"]["group_hit"], case["vlmevalkit"]["group_needs_judge"])
    ours = {g: (int(all(v["correct"])), v["needs_judge"]) for g, v in groups.items()}
    theirs = {g: v["theirs"] for g, v in groups.items()}
    assert ours == theirs


@pytest.mark.parametrize("name", YES_NO)
def test_yes_no_reads_each_reply_as_vlmevalkit_does(name: str) -> None:
    cases, _, grades = _graded(name)
    wrong = [
        (c["case"], c["prediction"], g["extracted"], c["vlmevalkit"]["extracted"])
        for c, g in zip(cases, grades, strict=True)
        if (g["extracted"], int(g["correct"]), g["judge"] == NEEDS_JUDGE)
        != (c["vlmevalkit"]["extracted"], c["vlmevalkit"]["hit"], c["vlmevalkit"]["needs_judge"])
    ]
    assert wrong == [], "\n".join(map(str, wrong))


@pytest.mark.parametrize("name", OPEN)
def test_open_answers_score_as_vlmevalkit_scores_them(name: str) -> None:
    cases, _, grades = _graded(name)
    wrong = []
    for case, grade in zip(cases, grades, strict=True):
        ours = float(grade["correct"]) if "correct" in grade else float(grade["score"])
        if ours != pytest.approx(float(case["vlmevalkit"]["hit"]), abs=1e-9):
            wrong.append((case["case"], case["prediction"], ours, case["vlmevalkit"]["hit"]))
    assert wrong == [], "\n".join(map(str, wrong))


def test_mathvista_judges_and_scores_as_vlmevalkit_does_when_its_judge_answers_nothing() -> None:
    cases, _, grades = _graded("MathVista_MINI")
    wrong = [
        (c["case"], c["prediction"], g)
        for c, g in zip(cases, grades, strict=True)
        if (g["judge"] == NEEDS_JUDGE, int(g["correct"])) != (c["vlmevalkit"]["needs_judge"], c["vlmevalkit"]["hit"])
    ]
    assert wrong == [], "\n".join(map(str, wrong))


def test_mmvet_is_graded_by_a_judge_only() -> None:
    cases, _, grades = _graded("MMVet")
    assert all(c["vlmevalkit"]["needs_judge"] and c["vlmevalkit"]["hit_if_judge_fails"] == 0.0 for c in cases)
    assert all(g["judge"] == NEEDS_JUDGE and g["score"] == 0.0 for g in grades)


def _reported(name: str) -> dict[str, Any]:
    (content,) = TABLES[name]["aggregate"]["files"].values() or [None]
    return {"rows": content, "primary": TABLES[name]["aggregate"]["primary"]}


@pytest.mark.parametrize("name", [*MCQ, *OPEN[:-1], "MathVista_MINI", "MMVet"])
def test_the_score_is_the_one_vlmevalkit_reports(name: str) -> None:
    _, items, grades = _graded(name)
    score = registry.get(name).aggregate(items, grades)
    rows = _reported(name)["rows"]
    if name == "MMMU_DEV_VAL":
        expected = 100 * next(r["Overall"] for r in rows if r["split"] == "validation")
    elif name in ("MathVista_MINI", "MMVet"):
        expected = next(r["acc"] for r in rows if r.get("Task&Skill", r.get("Category")) == "Overall")
    elif name in MCQ:
        expected = 100 * rows[0]["Overall"]
    else:
        expected = rows[0]["Overall"]
    assert score.score == pytest.approx(expected, abs=1e-6)


def test_yes_no_scores_are_the_ones_vlmevalkit_reports() -> None:
    _, items, grades = _graded("MME")
    mme = registry.get("MME").aggregate(items, grades).raw
    (row,) = _reported("MME")["rows"]
    assert (mme["perception"], mme["cognition"]) == pytest.approx((row["perception"], row["reasoning"]))
    assert mme["categories"] == pytest.approx({k: v for k, v in row.items() if k not in ("perception", "reasoning")})

    _, items, grades = _graded("POPE")
    pope = registry.get("POPE").aggregate(items, grades)
    overall = next(r for r in _reported("POPE")["rows"] if r["split"] == "Overall")
    assert pope.score == pytest.approx(overall["Overall"], abs=1e-6)
    assert (pope.raw["accuracy"], pope.raw["precision"], pope.raw["recall"]) == pytest.approx(
        (overall["acc"], overall["precision"], overall["recall"]), abs=1e-6
    )

    _, items, grades = _graded("HallusionBench")
    hallusion = registry.get("HallusionBench").aggregate(items, grades).raw
    overall = next(r for r in _reported("HallusionBench")["rows"] if r["split"] == "Overall")
    assert (hallusion["aAcc"], hallusion["fAcc"], hallusion["qAcc"]) == pytest.approx(
        (overall["aAcc"], overall["fAcc"], overall["qAcc"]), abs=1e-6
    )


def test_ocrbench_counts_as_vlmevalkit_counts() -> None:
    _, items, grades = _graded("OCRBench")
    assert (
        registry.get("OCRBench").aggregate(items, grades).raw["count"]
        == TABLES["OCRBench"]["aggregate"]["primary"]["Final Score"]
    )
