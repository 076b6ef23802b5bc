"""Finalize a run: the global dedup over every worker's output, the final shards and `_manifest.json`.

Output order is input order (input shard, then row), so the final shards are the same whatever the number of
workers. Finalize is itself resumable: parts are written under temporary names and the manifest goes last; a
rerun after the manifest exists only tidies up and reports.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sailvl.api import CurationRun
from sailvl.api.curationrun import DedupStep
from sailvl.curate.counts import Counts
from sailvl.curate.dedup import Entry, global_dedup
from sailvl.curate.runner import ShardReport
from sailvl.curate.shards import (
    RECORD_COLUMNS,
    RECORD_SCHEMA,
    Layout,
    ParquetShard,
    iter_batches,
    shard_metadata,
)
from sailvl.curate.spec import SpecError
from sailvl.data.sources import Source, open_source

log = logging.getLogger("sailvl.curate")


class IncompleteRun(RuntimeError):
    """Finalize started before every input shard was processed (retryable: the workers may still be running)."""


@dataclass
class FinalReport:
    manifest: dict[str, Any]

    def message(self) -> dict[str, Any]:
        m = self.manifest
        return {"shards": m["shards"], "samples": m["samples"], **m["counts"]}


def _dedup_steps(run: CurationRun) -> list[tuple[int, DedupStep]]:
    return [(i, s.dedup) for i, s in enumerate(run.spec.steps) if s.dedup is not None]


def _entries(layout: Layout, shards: list[ShardReport], columns: list[str]) -> Iterator[Entry]:
    for report in shards:
        row = 0
        for batch in iter_batches(layout, layout.work(report.index), ["id", *columns]):
            data = batch.to_pydict()
            for i, rid in enumerate(data["id"]):
                yield Entry(rid, report.index, row, {c: data[c][i] for c in columns if data[c][i] is not None})
                row += 1


class PartWriter:
    """Final shards of exactly `size` records (the last one fewer), named part-00000.parquet onwards."""

    def __init__(self, layout: Layout, size: int) -> None:
        self.layout, self.size = layout, size
        self.files: list[dict[str, Any]] = []
        self._current: ParquetShard | None = None

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._current is None:
                path = self.layout.part(len(self.files))
                self._current = ParquetShard(self.layout, path, RECORD_SCHEMA)
            room = self.size - self._current.rows
            self._current.write(table.slice(0, room))
            table = table.slice(room)
            if self._current.rows == self.size:
                self._close()

    def _close(self) -> None:
        assert self._current is not None
        self._current.commit()
        self.files.append({"name": self._current.path.rsplit("/", 1)[-1], "samples": self._current.rows})
        self._current = None

    def close(self) -> list[dict[str, Any]]:
        if self._current is not None:
            self._close()
        return self.files


def finalize(run: CurationRun, source: Source | None = None) -> FinalReport:
    layout = Layout(run.spec.output.uri)
    if layout.exists(layout.manifest):
        layout.remove(f"{layout.root}/_work")
        log.info("the run is finalized already (%s)", layout.manifest)
        return FinalReport(layout.read_json(layout.manifest))
    shards = worker_reports(layout, (source or open_source(run.spec.input)).shards())

    start = time.perf_counter()
    dropped = _dropped(layout, shards, _dedup_steps(run))
    dedup_seconds = time.perf_counter() - start

    start = time.perf_counter()
    files = _write_parts(layout, shards, dropped, run.spec.output.samples_per_shard)
    write_seconds = time.perf_counter() - start

    manifest = build_manifest(run, shards, files, {"dedup": dedup_seconds, "write": write_seconds})
    layout.write_bytes(layout.manifest, (json.dumps(manifest, indent=2) + "\n").encode())
    layout.remove(f"{layout.root}/_work")
    log.info("finalized %s: %d shards, %d of %d records kept", layout.uri, len(files), manifest["samples"],
             manifest["counts"]["in"])  # fmt: skip
    return FinalReport(manifest)


def worker_reports(layout: Layout, names: list[str]) -> list[ShardReport]:
    """Every input shard's report, checked complete and written for the input at hand."""
    missing = [i for i in range(len(names)) if not layout.exists(layout.work(i))]
    if missing:
        listed = ", ".join(f"in-{i:05d}" for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise IncompleteRun(
            f"{len(missing)} of {len(names)} input shards have no worker output in {layout.uri}/_work ({listed}); "
            "run (or wait for) the workers first"
        )
    shards = []
    for i, name in enumerate(names):
        report = ShardReport.from_json(shard_metadata(layout, layout.work(i)), layout.work(i))
        if report.shard != name:
            raise SpecError(
                f"{layout.work(i)} was written for input shard {report.shard!r}, but input shard {i} is now {name!r}: "
                "the input changed since this output was started; write to a new output URI"
            )
        shards.append(report)
    return shards


def _dropped(
    layout: Layout, shards: list[ShardReport], steps: list[tuple[int, DedupStep]]
) -> dict[int, dict[int, str]]:
    """Input shard -> row -> reason, for the rows the global dedup drops."""
    if not steps or not shards:
        return {}
    columns = [c for c in layout.columns(layout.work(shards[0].index)) if c.startswith("_dedup")]
    by_shard: dict[int, dict[int, str]] = defaultdict(dict)
    for (shard, row), reason in global_dedup(list(_entries(layout, shards, columns)), steps).items():
        by_shard[shard][row] = reason
    return by_shard


def _write_parts(
    layout: Layout, shards: list[ShardReport], dropped: dict[int, dict[int, str]], size: int
) -> list[dict[str, Any]]:
    """The kept records in input order, as final shards; each shard's counts take the dedup drops."""
    parts = PartWriter(layout, size)
    for report in shards:
        gone = dropped.get(report.index, {})
        for reason in gone.values():
            report.counts.drop_kept(reason)
        row = 0
        for batch in iter_batches(layout, layout.work(report.index), RECORD_COLUMNS):
            table = pa.Table.from_batches([batch]).cast(RECORD_SCHEMA)
            if gone:
                table = table.filter(pa.array([row + i not in gone for i in range(table.num_rows)], type=pa.bool_()))
            row += batch.num_rows
            parts.write(table)
    files = parts.close()
    for stale in layout.parts():  # parts beyond the last are left from an earlier finalize of other data
        if int(stale.rsplit("-", 1)[-1].removesuffix(".parquet")) >= len(files):
            layout.remove(stale)
    return files


def build_manifest(
    run: CurationRun, shards: list[ShardReport], files: list[dict[str, Any]], finalize_seconds: dict[str, float]
) -> dict[str, Any]:
    total = Counts()
    timings: dict[str, dict[str, float]] = defaultdict(lambda: {"records": 0, "seconds": 0.0})
    for report in shards:
        total.merge(report.counts)
        for key, value in report.steps.items():
            timings[key]["records"] += value["records"]
            timings[key]["seconds"] += value["seconds"]
    for key, seconds in finalize_seconds.items():
        timings[f"finalize.{key}"] = {"records": total.records_in, "seconds": seconds}
    return {
        "apiVersion": run.api_version,
        "kind": run.kind,
        "name": run.name,
        "input": run.spec.input.uri,
        "output": run.spec.output.uri,
        "shards": len(files),
        "samples": total.kept,
        "counts": total.to_json(),
        "files": files,
        "timings": {k: {"records": int(v["records"]), "seconds": round(v["seconds"], 3)} for k, v in timings.items()},
        "inputShards": [r.to_json() for r in shards],
    }
