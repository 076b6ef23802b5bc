"""Reading scores out of model answers, robustly: a JSON object (bare, fenced, or inside prose) first, then the
usual textual forms ("Score: 4", "4/5", "4 out of 5", "rating of 4"), then a bare number. Anything else, or a
number outside 1-5, is unparseable: the caller retries once, then rejects the record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

LOW, HIGH = 1.0, 5.0
SCORE_KEYS = ("score", "rating", "overall", "overall_score", "grade")

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_TEXT_FORMS = (
    re.compile(rf"(?<![\w.]){_NUMBER}\s*(?:/|out of)\s*5(?!\w|\.\d)", re.IGNORECASE),
    re.compile(rf"\b(?:score|rating|rated|rate|grade)\b[^0-9\n]{{0,20}}?(?<![\w.]){_NUMBER}(?!\w|\.\d|\s*/\s*[0-46-9])",
               re.IGNORECASE),
)  # fmt: skip
_BARE = re.compile(rf"^\W*{_NUMBER}\W*$")


def json_objects(answer: str) -> list[dict[str, Any]]:
    """Every JSON object in the answer: the whole answer, fenced blocks, then flat `{...}` spans in order."""
    candidates = [answer.strip(), *(m.group(1).strip() for m in _FENCE.finditer(answer))]
    candidates += [m.group(0) for m in _OBJECT.finditer(answer)]
    found = []
    for text in candidates:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _in_range(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        match = re.fullmatch(rf"\s*{_NUMBER}\s*(?:/\s*5)?\s*", value)
        value = float(match.group(1)) if match else None
    if isinstance(value, int | float) and LOW <= value <= HIGH:
        return float(value)
    return None


def _key(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", name.strip().lower())


def parse_score(answer: str) -> float | None:
    """One overall score in [1, 5], or None."""
    for obj in json_objects(answer):
        keyed = {_key(k): v for k, v in obj.items()}
        for key in SCORE_KEYS:
            if key in keyed:
                return _in_range(keyed[key])
    for form in _TEXT_FORMS:
        match = form.search(answer)
        if match:
            return _in_range(float(match.group(1)))
    match = _BARE.match(answer)
    return _in_range(float(match.group(1))) if match else None


def parse_scores(answer: str, metrics: Sequence[str]) -> dict[str, float] | None:
    """A score in [1, 5] for every metric, or None if any is missing or out of range."""
    wanted = {_key(m): m for m in metrics}
    for obj in json_objects(answer):
        keyed = {_key(k): v for k, v in obj.items()}
        if all(k in keyed for k in wanted):
            found = {name: _in_range(keyed[k]) for k, name in wanted.items()}
            return {k: v for k, v in found.items() if v is not None} if None not in found.values() else None
    scores: dict[str, float] = {}
    for key, name in wanted.items():
        words = r"[\s_-]+".join(re.escape(w) for w in key.split("_"))
        match = re.search(rf"\b{words}\b\W{{0,10}}{_NUMBER}(?!\w|\.\d)", answer, re.IGNORECASE)
        value = _in_range(float(match.group(1))) if match else None
        if value is None:
            return None
        scores[name] = value
    return scores
