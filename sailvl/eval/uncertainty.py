"""How sure a benchmark score is: a bootstrap over its items (or over the units its score averages).

A score that is a mean over independent units (items; MMBench's circular question groups) is resampled as that mean
(`Benchmark.units`); one that is a statistic of independent items (POPE's F1) by recomputing it on resampled items;
one that combines grouped accuracies (MME's acc + acc+, HallusionBench's figure and question accuracies) gets no
interval here, and says so. Seeded, so the same grades give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sailvl.eval.base import Benchmark, Grade
from sailvl.eval.items import Item

RESAMPLES = 1000
SEED = 0


def interval(
    benchmark: Benchmark,
    items: Sequence[Item],
    grades: Sequence[Grade],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """`{"method", "se", "ci95": [low, high], "resamples"}` on the score's 0-100 scale, or `{"method": None,
    "reason"}` when the score is not one a plain bootstrap can resample."""
    rng = np.random.default_rng(seed)
    values = benchmark.units(items, grades)
    if values is not None:
        data = 100.0 * np.asarray(values, dtype=np.float64)
        if data.size < 2:
            return {"method": None, "reason": f"{data.size} unit(s): too few to resample"}
        picks = rng.integers(0, data.size, size=(resamples, data.size))
        scores = data[picks].mean(axis=1)
        return _summary("bootstrap over units", scores, resamples, units=int(data.size))
    if benchmark.independent_items:
        if len(items) < 2:
            return {"method": None, "reason": f"{len(items)} item(s): too few to resample"}
        scores = np.empty(resamples)
        for r in range(resamples):
            picks = rng.integers(0, len(items), size=len(items))
            scores[r] = benchmark.aggregate([items[i] for i in picks], [grades[i] for i in picks]).score
        return _summary("bootstrap over items", scores, resamples, units=len(items))
    return {"method": None, "reason": "the score combines grouped accuracies; no plain bootstrap applies"}


def _summary(method: str, scores: np.ndarray, resamples: int, *, units: int) -> dict[str, Any]:
    low, high = np.percentile(scores, [2.5, 97.5])
    return {
        "method": method,
        "se": round(float(scores.std(ddof=1)), 4),
        "ci95": [round(float(low), 4), round(float(high), 4)],
        "resamples": resamples,
        "units": units,
    }
