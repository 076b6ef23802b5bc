"""Benchmark files: the rows of a synthetic benchmark, written as a VLMEvalKit TSV."""

from __future__ import annotations

import base64
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sailvl.api.benchmarks import SYNTHETIC_BENCHMARKS
from sailvl.data.synthetic.benchmarks import COLUMNS
from sailvl.data.synthetic.generator import generate
from sailvl.data.synthetic.spec import SyntheticSpec


def benchmark_rows(spec: SyntheticSpec) -> Iterator[dict[str, Any]]:
    """The rows of the benchmark `spec.split`, image included (base64), in index order."""
    if spec.split not in SYNTHETIC_BENCHMARKS:
        raise ValueError(f"split {spec.split!r} is not a benchmark; expected one of {', '.join(SYNTHETIC_BENCHMARKS)}")
    for index in range(spec.n):
        record = generate(spec, index)
        item = record.meta["item"]
        row = {"image": base64.b64encode(record.images[0]).decode("ascii"), **item}
        yield {column: row[column] for column in COLUMNS[spec.split]}


def write_benchmark_tsv(spec: SyntheticSpec, path: str | os.PathLike[str]) -> Path:
    """Write the benchmark `spec.split` as a VLMEvalKit TSV at `path` (via a temporary name, then renamed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS[spec.split], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in benchmark_rows(spec):
            writer.writerow({k: _one_line(v) for k, v in row.items()})
    os.replace(partial, target)
    return target


def _one_line(value: Any) -> Any:
    # Questions are single lines, but a TSV cell must never break a row whatever a caption holds.
    return value.replace("\t", " ").replace("\n", " ") if isinstance(value, str) else value
