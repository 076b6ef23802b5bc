"""Benchmark files for the evaluation tests: small PNG images and VLMEvalKit-layout TSVs written from rows."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image


def png(seed: int, size: tuple[int, int] = (32, 24)) -> bytes:
    """A small PNG whose pixels (so whose bytes) differ by seed."""
    image = Image.new("RGB", size, ((37 * seed) % 256, (91 * seed) % 256, (53 * seed + 7) % 256))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_spec(folder: Path, benchmarks: tuple[str, ...], data: str, **spec: Any) -> Path:
    document = {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "EvalSuite",
        "metadata": {"name": "suite"},
        "spec": {"model": {"uri": "/models/tiny"}, "benchmarks": list(benchmarks), "data": {"uri": data}, **spec},
    }
    path = folder / "suite.json"
    path.write_text(json.dumps(document))
    return path


def write_tsv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Rows as pandas writes a VLMEvalKit TSV (tab-separated, header first, minimal quoting); absent cells empty."""
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", lineterminator="\n", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k in columns})
    return path
