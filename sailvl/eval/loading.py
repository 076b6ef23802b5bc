"""Where a suite's items come from and its outputs go: `<data.uri>/<benchmark>.tsv` (a local or mounted folder, or
s3://, gs://, hf:// through fsspec), or the `synthetic://shapes` generator, which yields the same rows the TSV
writer would so that both go through one parser.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sailvl.api.uris import is_synthetic, scheme_of
from sailvl.data.uris import resolve_uri
from sailvl.eval.base import Benchmark
from sailvl.eval.items import BenchmarkFileError, Item, parse_rows, read_tsv, read_tsv_text


class ConfigError(ValueError):
    """A suite that cannot run as configured (missing endpoint, unusable URI ...): exit status 2, never retried."""


def local_path(uri: str) -> Path | None:
    """The local path of a plain path, file:// or pvc:// URI (claims are mounted under /mnt/pvc in a pod; the local
    runner passes mapped paths); None for remote schemes."""
    if scheme_of(uri) not in ("file", "pvc"):
        return None
    return resolve_uri(uri)


def output_dir(uri: str) -> Path:
    path = local_path(uri)
    if path is None:
        raise ConfigError(
            f"output {uri!r}: predictions are appended as they arrive, which object stores cannot do; "
            "use a local or mounted folder (a pvc:// claim)"
        )
    return path


def load_items(benchmark: Benchmark, data_uri: str, limit: int | None = None) -> list[Item]:
    """The benchmark's items (the first `limit` of them when given), each checked by the benchmark."""
    if is_synthetic(data_uri):
        source, items = _synthetic(benchmark, data_uri, limit)
    else:
        source, items = _tsv(benchmark, data_uri)
        items = items[:limit] if limit is not None else items
    if not items:
        raise BenchmarkFileError(source, "holds no item with an image")
    for item in items:
        benchmark.check(item, source)
    return items


def _synthetic(benchmark: Benchmark, data_uri: str, limit: int | None) -> tuple[str, list[Item]]:
    from sailvl.data.synthetic import benchmark_rows, benchmark_spec

    try:
        spec = benchmark_spec(data_uri, benchmark.name)
    except ValueError as exc:
        raise ConfigError(f"data.uri: {exc}") from None
    rows: Iterator[dict[str, Any]] = itertools.islice(benchmark_rows(spec), limit)
    source = f"{spec.uri()} ({benchmark.name})"
    numbered = ((number, row) for number, row in enumerate(rows, start=1))
    return source, parse_rows(numbered, source, benchmark.columns, base_dir=None)


def _tsv(benchmark: Benchmark, data_uri: str) -> tuple[str, list[Item]]:
    name = f"{benchmark.name}.tsv"
    folder = local_path(data_uri)
    if folder is not None:
        return str(folder / name), read_tsv(folder / name, benchmark.columns)
    from sailvl.data.sources import SourceError, list_files  # fsspec: only remote data needs it

    uri = data_uri.rstrip("/") + "/" + name
    try:
        fs, paths = list_files(uri, (".tsv",))
        with fs.open(paths[0], "r", encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (SourceError, FileNotFoundError):
        raise BenchmarkFileError(uri, "no such file (expected a VLMEvalKit TSV named <benchmark>.tsv)") from None
    return uri, read_tsv_text(text, uri, benchmark.columns)
