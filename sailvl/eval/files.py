"""Results files in VLMEvalKit's layout, so a lab can put sailvl's numbers beside its own and audit them:

- `<model>_<benchmark>.tsv`: the benchmark's columns (but the image) and `prediction`, one row per item: what
  VLMEvalKit's inference writes as `.xlsx` (tab-separated here: no spreadsheet library is needed to read it, and
  `pd.read_csv(sep="\\t")` reads it as VLMEvalKit reads its own `.tsv` predictions);
- the score file under the name VLMEvalKit gives it: `_acc.csv` (multiple choice, open answers), `_score.csv`
  (yes/no), `_<judge>_score.csv` (MathVista, MMVet; `<judge>` is `exact_matching` without one) and
  `_score.json` (OCRBench), with VLMEvalKit's headline columns and values (fractions for multiple choice, as it
  writes them; percent elsewhere).

The per-item grades (how each reply was read, by rule or judge) are in `<benchmark>.grades.json` beside them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sailvl.eval.base import Benchmark, Score
from sailvl.eval.choice import MMMU, MultipleChoice
from sailvl.eval.items import Item
from sailvl.eval.vqa import MathVista, MMVet, OCRBench, ShortAnswer
from sailvl.eval.yesno import MME, POPE, HallusionBench, YesNo

EXACT_MATCHING = "exact_matching"  # VLMEvalKit's name for "no judge" in its file names


def model_label(model_uri: str | None, served: str) -> str:
    """The model's name in file names: its checkpoint folder (the stage's, for `<stage>/final`), else the served
    name."""
    if model_uri:
        parts = [p for p in model_uri.rstrip("/").split("/") if p]
        if parts and parts[-1] == "final" and len(parts) > 1:
            return parts[-2]
        if parts:
            return parts[-1]
    return served


def write_files(
    folder: Path,
    *,
    model: str,
    judge: str | None,
    benchmark: Benchmark,
    items: Sequence[Item],
    predictions: Sequence[str],
    score: Score,
) -> list[Path]:
    """Write the benchmark's prediction and score files; returns their paths."""
    base = f"{model}_{benchmark.name}"
    written = [_write(folder / f"{base}.tsv", _predictions_tsv(items, predictions))]
    suffix, text = score_file(benchmark, score, judge)
    written.append(_write(folder / f"{base}{suffix}", text))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def _predictions_tsv(items: Sequence[Item], predictions: Sequence[str]) -> str:
    columns: dict[str, None] = {"index": None}
    for item in items:
        columns |= dict.fromkeys(k for k in item.fields if k != "image")
    columns["prediction"] = None
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(list(columns))
    for item, prediction in zip(items, predictions, strict=True):
        cells = {"index": item.index, **item.fields, "prediction": prediction}
        writer.writerow([cells.get(c, "") for c in columns])
    return out.getvalue()


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def score_file(benchmark: Benchmark, score: Score, judge: str | None) -> tuple[str, str]:
    """(file name suffix, contents) of the benchmark's score file, as VLMEvalKit names and fills it."""
    raw = score.raw
    if isinstance(benchmark, MultipleChoice):  # fractions, one row per split
        if isinstance(benchmark, MMMU) and raw.get("splits"):
            splits = raw["splits"]
            return "_acc.csv", _csv(["split", "Overall"], [[s, v / 100] for s, v in splits.items()])
        return "_acc.csv", _csv(["split", "Overall"], [["none", score.score / 100]])
    if isinstance(benchmark, MME):
        categories = raw["categories"]
        header = ["perception", "reasoning", *categories]
        return "_score.csv", _csv(header, [[raw["perception"], raw["cognition"], *categories.values()]])
    if isinstance(benchmark, POPE):
        rows = [["Overall", raw["f1"], raw["accuracy"], raw["precision"], raw["recall"]]]
        return "_score.csv", _csv(["split", "Overall", "acc", "precision", "recall"], rows)
    if isinstance(benchmark, HallusionBench):
        return "_score.csv", _csv(
            ["split", "aAcc", "fAcc", "qAcc"], [["Overall", raw["aAcc"], raw["fAcc"], raw["qAcc"]]]
        )
    if isinstance(benchmark, YesNo):
        return "_score.csv", _csv(["split", "Overall"], [["Overall", score.score]])
    if isinstance(benchmark, OCRBench):
        body = dict(raw.get("groups") or {}) | {"Final Score": raw["count"], "Final Score Norm": raw["count"] / 10}
        return "_score.json", json.dumps(body, indent=4) + "\n"
    if isinstance(benchmark, ShortAnswer):
        return "_acc.csv", _csv(["Overall"], [[score.score]])
    label = judge or EXACT_MATCHING
    if isinstance(benchmark, MathVista):
        methods = raw.get("methods") or {}
        row = ["Overall", score.items, methods.get("prefetch", 0), round(score.score * score.items / 100),
               100 * methods.get("prefetch", 0) / max(score.items, 1), score.score]  # fmt: skip
        return f"_{label}_score.csv", _csv(["Task&Skill", "tot", "prefetch", "hit", "prefetch_rate", "acc"], [row])
    if isinstance(benchmark, MMVet):
        return f"_{label}_score.csv", _csv(["Category", "tot", "acc"], [["Overall", score.items, score.score]])
    return "_acc.csv", _csv(["Overall"], [[score.score]])  # the synthetic benchmarks: no VLMEvalKit file to match
