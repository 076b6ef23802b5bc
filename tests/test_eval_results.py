"""What a results file says beside each score: its bootstrap interval, how the replies were read (rule, judge, judge
failures, judge-free), and whether the judge failed often enough to make the suite Degraded."""

from __future__ import annotations

import asyncio
import json

import pytest

from sailvl.api import conditions as c
from sailvl.api.evalsuite import degraded_condition
from sailvl.eval import registry
from sailvl.eval.base import JUDGE, JUDGE_FAILED, NEEDS_JUDGE, RULE
from sailvl.eval.items import Item
from sailvl.eval.report import termination_message
from sailvl.eval.runner import DEGRADED_SHARE, judge_accounting
from sailvl.eval.uncertainty import interval
from tests.test_eval_vlmevalkit_parity import TABLES, _graded


@pytest.mark.parametrize("name", list(TABLES))
def test_a_mean_score_is_the_mean_of_its_units_and_its_interval_holds_it(name: str) -> None:
    benchmark = registry.get(name)
    _, items, grades = _graded(name)
    score = benchmark.aggregate(items, grades).score
    units = benchmark.units(items, grades)
    found = interval(benchmark, items, grades)
    if units is not None:
        assert 100 * sum(units) / len(units) == pytest.approx(score)
        assert found["method"] == "bootstrap over units"
    elif benchmark.independent_items:
        assert found["method"] == "bootstrap over items"
    else:
        assert found == {"method": None, "reason": "the score combines grouped accuracies; no plain bootstrap applies"}
        return
    low, high = found["ci95"]
    assert low <= score <= high and found["se"] >= 0
    assert interval(benchmark, items, grades) == found  # seeded: the same grades, the same interval


def test_the_interval_narrows_with_more_items() -> None:
    benchmark = registry.get("MMStar")
    item = Item("1", 0, (), {"question": "q", "A": "x", "B": "y", "answer": "A"})
    grades = [{"correct": i % 2 == 0} for i in range(40)]
    wide = interval(benchmark, [item] * 40, grades)
    narrow = interval(benchmark, [item] * 400, grades * 10)
    assert narrow["se"] < wide["se"] / 2  # SE falls as 1/sqrt(n): 10x the items, about a third


def test_judge_accounting_and_the_degraded_threshold() -> None:
    grades = [{"judge": RULE}] * 80 + [{"judge": JUDGE}] * 18 + [{"judge": JUDGE_FAILED}] * 2
    counted = judge_accounting(grades, judge_model="qwen")
    assert counted == {"model": "qwen", "rule": 80, "asked": 20, "failures": 2, "needsJudge": 0, "share": 0.2,
                       "judgeFree": False, "degraded": True}  # fmt: skip  # 2 of 20 > 5%
    assert DEGRADED_SHARE < 2 / 20
    healthy = judge_accounting([{"judge": JUDGE}] * 99 + [{"judge": JUDGE_FAILED}], judge_model="qwen")
    assert not healthy["degraded"]
    free = judge_accounting([{"judge": RULE}, {"judge": NEEDS_JUDGE}], judge_model=None)
    assert (free["judgeFree"], free["needsJudge"], free["degraded"]) == (True, 1, False)


def test_a_degraded_suite_says_so_in_its_termination_message_and_condition() -> None:
    summary = {
        "results": {"MMVet": 40.0, "POPE": 80.0},
        "average": 60.0,
        "groups": {},
        "benchmarks": {"MMVet": {"judge": {"degraded": True, "failures": 30, "asked": 218}}, "POPE": {"judge": {}}},
    }
    message = json.loads(termination_message(summary))
    assert message["degraded"] == {"MMVet": [30, 218]}
    assert degraded_condition(message) == (
        "True",
        c.REASON_JUDGE_FAILURES,
        "MMVet: the judge failed on 30 of 218 replies (scored as wrong; see results.json)",
    )
    del summary["benchmarks"]["MMVet"]["judge"]["degraded"]
    quiet = json.loads(termination_message(summary))
    assert "degraded" not in quiet and degraded_condition(quiet)[:2] == ("False", c.REASON_JUDGE_RELIABLE)


class CountingJudge:
    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []  # type: ignore[var-annotated]

    async def ask(self, prompt: str, *, temperature: float = 0.0) -> str:
        self.prompts.append(prompt)
        return self.reply


def _rotations(group: int, replies: list[str]) -> tuple[list[Item], list[str]]:
    items = [
        Item(str(group + k * 1_000_000), 0, (), {"question": f"q{group}", "A": "x", "B": "y", "answer": "A"})
        for k in range(len(replies))
    ]
    return items, replies


def test_a_circular_group_read_wrong_by_rule_sends_nothing_to_the_judge() -> None:
    benchmark = registry.get("MMBench_DEV_EN")
    wrong_items, wrong = _rotations(1, ["B", "hmm", "hmm"])  # rotation 0 read as B: the group is wrong
    open_items, undecided = _rotations(2, ["A", "hmm", "A"])  # nothing wrong yet: only "hmm" goes to the judge
    judge = CountingJudge("A")
    grades = asyncio.run(benchmark.grade_all([*wrong_items, *open_items], [*wrong, *undecided], judge))
    assert len(judge.prompts) == 1 and "Answer: hmm" in judge.prompts[0]
    assert [g["judge"] for g in grades] == [RULE, RULE, RULE, RULE, JUDGE, RULE]
    assert [g["correct"] for g in grades[3:]] == [True, True, True]


def test_a_judge_that_never_names_an_option_leaves_a_seeded_random_one() -> None:
    benchmark = registry.get("MMStar")
    item = Item("7", 0, (), {"question": "q", "A": "x", "B": "y", "C": "z", "answer": "A"})
    judge = CountingJudge("I cannot tell")
    first = asyncio.run(benchmark.grade(item, "hmm", judge))
    again = asyncio.run(benchmark.grade(item, "hmm", CountingJudge("I cannot tell")))
    assert first["judge"] == JUDGE_FAILED and first["choice"] in ("A", "B", "C", "Z")
    assert first == again  # a rerun scores the same
    assert len(judge.prompts) == 3  # VLMEvalKit's three tries


def test_an_item_whose_right_option_reads_as_missing_is_scored_and_reported() -> None:
    benchmark = registry.get("MMStar")
    # The right option's text was "None": pandas (and so VLMEvalKit, and our reader) reads it as missing.
    item = Item("1", 0, (), {"question": "q", "A": "x", "B": "y", "answer": "C"})
    benchmark.check(item, "MMStar.tsv")
    grade = asyncio.run(benchmark.grade(item, "C", None))
    score = benchmark.aggregate([item], [grade])
    assert not grade["correct"] and score.raw["unwinnable"] == 1
    assert any("reads as missing" in text for text in score.limitations)
