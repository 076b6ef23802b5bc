"""Reading scores out of model answers: JSON in any wrapping first, then the usual textual forms; prose and
out-of-range numbers are unparseable."""

from __future__ import annotations

import pytest

from sailvl.curate.answers import parse_score, parse_scores


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ('{"score": 4, "reason": "accurate"}', 4.0),
        ('{"Score": "3"}', 3.0),
        ('```json\n{"rating": 5}\n```', 5.0),
        ('Here is my rating: {"score": 2.5, "reason": "vague"} Hope this helps.', 2.5),
        ('{"overall score": 1}', 1.0),
        ('{"score": "4/5"}', 4.0),
        ("Score: 2", 2.0),
        ("Rating - 3.", 3.0),
        ("I rate it 4/5.", 4.0),
        ("It deserves 3 out of 5", 3.0),
        ("There are 3 circles. Score: 5", 5.0),
        ("4", 4.0),
        (" 4. ", 4.0),
        ("**3**", 3.0),
        # unparseable
        ("The caption is accurate and detailed.", None),
        ("", None),
        ('{"score": 9}', None),
        ('{"score": 0}', None),
        ('{"score": true}', None),
        ('{"reason": "no score here"}', None),
        ("Score: 7", None),
        ("Score: 4/10", None),
        ("rating of 10", None),
        ("There are 3 circles and 2 squares.", None),
    ],
)
def test_parse_score(answer: str, score: float | None) -> None:
    assert parse_score(answer) == score


@pytest.mark.parametrize(
    ("answer", "scores"),
    [
        ('{"difficulty": 3, "Complexity": 2}', {"difficulty": 3.0, "complexity": 2.0}),
        ('```json\n{"difficulty": "5", "complexity": 1.5}\n```', {"difficulty": 5.0, "complexity": 1.5}),
        ("Difficulty: 3\nComplexity - 4", {"difficulty": 3.0, "complexity": 4.0}),
        ('{"difficulty": 3}', None),
        ('{"difficulty": 3, "complexity": 6}', None),
        ("Difficulty: 3", None),
        ("hard and complex", None),
    ],
)
def test_parse_scores(answer: str, scores: dict[str, float] | None) -> None:
    assert parse_scores(answer, ["difficulty", "complexity"]) == scores


def test_metric_names_match_across_spellings() -> None:
    assert parse_scores('{"image text relevance": 4}', ["image_text_relevance"]) == {"image_text_relevance": 4.0}
    assert parse_scores("Image-text relevance: 2", ["image_text_relevance"]) == {"image_text_relevance": 2.0}
