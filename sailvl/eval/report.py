"""A suite's results: per-benchmark scores, the four group averages DESIGN §3 fixes, the overall average, the
container termination message (`{results, average, groups}`, at most 4 KiB) and a table for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sailvl.api.benchmarks import GROUPS
from sailvl.eval.base import Score
from sailvl.eval.scorers import mean

TERMINATION_LIMIT = 4096  # bytes Kubernetes keeps of a termination message


def group_averages(results: Mapping[str, float]) -> dict[str, float | None]:
    """Mean score of each group over its benchmarks that were run (None when none was)."""
    out: dict[str, float | None] = {}
    for group, members in GROUPS.items():
        present = [results[m] for m in members if m in results]
        out[group] = mean(present) if present else None
    return out


def summarize(scores: Mapping[str, Score], *, extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The results document: results, average, groups, per-benchmark detail, counts and limitations."""
    results = {name: s.score for name, s in scores.items()}
    benchmarks = {name: asdict(s) | dict((extra or {}).get(name, {})) for name, s in scores.items()}
    limitations = [f"{name}: {text}" for name, s in scores.items() for text in s.limitations]
    return {
        "results": results,
        "average": mean(results.values()) if results else None,
        "groups": group_averages(results),
        "benchmarks": benchmarks,
        "counts": {"benchmarks": len(scores), "items": sum(s.items for s in scores.values())},
        "limitations": limitations,
    }


def degraded(summary: Mapping[str, Any]) -> dict[str, list[int]]:
    """Benchmarks whose judge failed on too many of the replies it was asked about: {name: [failures, asked]}."""
    out = {}
    for name, detail in (summary.get("benchmarks") or {}).items():
        judge = detail.get("judge") or {}
        if judge.get("degraded"):
            out[name] = [int(judge["failures"]), int(judge["asked"])]
    return out


def termination_message(summary: Mapping[str, Any], limit: int = TERMINATION_LIMIT) -> str:
    """`{results, average, groups}` (plus `degraded`, when a judge failed too often) as compact JSON within `limit`
    bytes (fewer decimals until it fits)."""
    failing = degraded(summary)
    for digits in (4, 2, 1, 0):
        body: dict[str, Any] = {
            "results": {k: round(v, digits) for k, v in summary["results"].items()},
            "average": _round(summary["average"], digits),
            "groups": {k: _round(v, digits) for k, v in summary["groups"].items()},
        }
        if failing:
            body["degraded"] = failing
        message = json.dumps(body, separators=(",", ":"))
        if len(message.encode()) <= limit:
            return message
    raise ValueError(f"the termination message needs {len(message.encode())} bytes; Kubernetes keeps {limit}")


def _interval(detail: Mapping[str, Any] | None) -> str:
    found = (detail or {}).get("uncertainty") or {}
    return f"  95% [{found['ci95'][0]:.2f}, {found['ci95'][1]:.2f}]" if found.get("ci95") else ""


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def write_termination_message(summary: Mapping[str, Any], path: Path) -> None:
    """Write the message where the container's terminationMessagePath (SAILVL_TERMINATION_LOG) points."""
    path.write_text(termination_message(summary), encoding="utf-8")


def table(summary: Mapping[str, Any]) -> str:
    """Scores per benchmark, group averages and the overall average, aligned for a terminal."""
    details = summary.get("benchmarks") or {}
    rows = [(name, f"{score:7.2f}{_interval(details.get(name))}") for name, score in summary["results"].items()]
    rows += [(f"[{group}]", "      -" if v is None else f"{v:7.2f}") for group, v in summary["groups"].items()]
    average = summary["average"]
    rows.append(("average", "      -" if average is None else f"{average:7.2f}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += [f"note: {text}" for text in summary["limitations"]]
    lines += [f"degraded: {name}: the judge failed on {f} of {a} replies" for name, (f, a) in degraded(summary).items()]
    return "\n".join(lines)
