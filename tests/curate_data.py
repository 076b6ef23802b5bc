"""Inputs for the curation tests: distinct smooth images (their perceptual hashes lie far apart), re-encodings of
them (near duplicates), parquet shards, and CurationRun manifests."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw


def picture(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A smooth random picture: blurred colour blobs and one ellipse, different for every seed."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    x, y = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
    draw.ellipse((x, y, x + size[0] // 3, y + size[1] // 3), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png(seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    return encode(picture(seed, size))


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    schema = pa.schema([("id", pa.string()), ("image", pa.binary()), ("text", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def curation(
    input_uri: str, output: Path, steps: list[dict[str, Any]], *, fmt: str | None = "parquet", **spec: Any
) -> dict[str, Any]:
    source: dict[str, Any] = {"uri": input_uri}
    if fmt is not None:
        source["format"] = fmt
    return {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "CurationRun",
        "metadata": {"name": "curate-test"},
        "spec": {
            "input": source,
            "output": {"uri": str(output), "samplesPerShard": spec.pop("samples_per_shard", 3)},
            "models": [{"name": "captioner", "model": {"uri": "/models/captioner"}}],
            "steps": copy.deepcopy(steps),
            "workers": {"parallelism": spec.pop("parallelism", 2), "concurrency": spec.pop("concurrency", 4)},
            **spec,
        },
    }


def read_parts(output: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in sorted(output.glob("part-*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return rows
