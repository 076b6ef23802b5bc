"""A curation worker: its share of the input's shards (round-robin), every record through the pipeline, one
output shard per input shard.

Records of all the worker's shards flow through one window of tasks, so the servers stay busy across shard
boundaries; each shard's results are written in input order as they complete, and the shard is committed (renamed)
only once every record of it is accounted for. A shard whose output exists is skipped, so a worker killed at any
moment and run again produces exactly what an uninterrupted run does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import pyarrow as pa

from sailvl.api import CurationRun
from sailvl.curate import signatures
from sailvl.curate.client import ChatClient, Health, RetryPolicy, open_session
from sailvl.curate.counts import Counts
from sailvl.curate.metrics import CurateMetrics
from sailvl.curate.pipeline import Pipeline, Result
from sailvl.curate.shards import ROW_GROUP, Layout, ParquetShard, record_row, shard_metadata, work_schema
from sailvl.curate.spec import SpecError
from sailvl.data.records import Record, RecordError
from sailvl.data.sources import Source, open_source

log = logging.getLogger("sailvl.curate")
READ_CHUNK = 32
REJECT_SCHEMA = pa.schema(
    [pa.field("id", pa.string(), nullable=False), pa.field("reason", pa.string(), nullable=False)]
)


@dataclass
class ShardReport:
    index: int
    shard: str
    counts: Counts
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "shard": self.shard, "counts": self.counts.to_json(), "steps": self.steps,
                "seconds": round(self.seconds, 3)}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> ShardReport:
        return cls(
            data["index"], data["shard"], Counts.from_json(data["counts"], where), data["steps"], data["seconds"]
        )


@dataclass
class WorkerReport:
    worker: int
    shards: list[ShardReport]

    @property
    def counts(self) -> Counts:
        total = Counts()
        for shard in self.shards:
            total.merge(shard.counts)
        return total

    def message(self) -> dict[str, Any]:
        return {"worker": self.worker, "shards": len(self.shards), **self.counts.to_json()}


def read_rows(source: Source, shard: str) -> Iterator[tuple[int, Record | RecordError]]:
    """Every row of `shard`, a row that does not parse as its RecordError (the shard goes on)."""
    rows = source.read(shard)
    row = 0
    while True:
        try:
            record = next(rows)
        except StopIteration:
            return
        except RecordError as error:
            # A generator that raised is finished: read the rest one row at a time.
            yield row, error
            for rest in range(row + 1, source.rows(shard)):
                try:
                    yield rest, source.get(shard, rest)
                except RecordError as e:
                    yield rest, e
            return
        yield row, record
        row += 1


class InputUnreadable(RuntimeError):
    """An input shard that cannot be read at all (a storage error or a corrupt file): the worker stops, retryably."""


async def chunks(shard: str, rows: Iterator[Any], size: int = READ_CHUNK) -> AsyncIterator[list[Any]]:
    """Read in a thread (decoding a shard is I/O and CPU the event loop must not wait on)."""
    while True:
        try:
            chunk = await asyncio.to_thread(lambda: list(islice(rows, size)))
        except Exception as e:  # a bad row is a RecordError, handled row by row; this is the whole shard
            raise InputUnreadable(f"cannot read input shard {shard}: {type(e).__name__}: {e}") from e
        if not chunk:
            return
        yield chunk


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped a task group (the others are the cancellations it caused)."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        error = stack.pop(0)
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        else:
            leaves.append(error)
    return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])


class Worker:
    def __init__(
        self,
        run: CurationRun,
        worker: int,
        workers: int,
        *,
        urls: Mapping[str, str],
        metrics: CurateMetrics | None = None,
        policy: RetryPolicy | None = None,
        threads: int | None = None,
    ) -> None:
        self.run, self.worker, self.workers, self.urls = run, worker, workers, dict(urls)
        self.metrics, self.policy = metrics, policy or RetryPolicy()
        self.threads = threads or len(os.sched_getaffinity(0))
        self.layout = Layout(run.spec.output.uri)
        self.concurrency = run.spec.workers.concurrency
        # Records in flight: enough beyond the requests that CPU work and stragglers never leave a request slot
        # idle, and few enough to bound memory (results are released in input order, so one slow record holds
        # back at most this many).
        self.window = max(16, 4 * self.concurrency)
        columns: dict[str, pa.DataType] = {}
        for index, step in enumerate(run.spec.steps):
            if step.dedup is not None:
                columns.update(signatures.columns(index, step.dedup))
        self.schema = work_schema(columns)

    def assigned(self, source: Source) -> list[tuple[int, str]]:
        return [(i, name) for i, name in enumerate(source.shards()) if i % self.workers == self.worker]

    async def execute(self, source: Source | None = None) -> WorkerReport:
        source = source or open_source(self.run.spec.input)
        mine = self.assigned(source)
        if self.layout.exists(self.layout.manifest):
            return self._from_manifest(mine)
        reports = {i: self._done(i, name) for i, name in mine if self.layout.exists(self.layout.work(i))}
        todo = [(i, name) for i, name in mine if i not in reports]
        log.info(
            "worker %d of %d: %d input shards, %d done already", self.worker, self.workers, len(mine), len(reports)
        )
        for index, _ in todo:
            self.layout.remove_temporaries(self.layout.work(index))
            self.layout.remove_temporaries(self.layout.rejects(index))
        if todo:
            for report in await self._process(source, todo):
                reports[report.index] = report
        return WorkerReport(self.worker, [reports[i] for i, _ in mine])

    def _done(self, index: int, shard: str) -> ShardReport:
        path = self.layout.work(index)
        report = ShardReport.from_json(shard_metadata(self.layout, path), path)
        if report.shard != shard:
            raise SpecError(
                f"{path} was written for input shard {report.shard!r}, but input shard {index} is now {shard!r}: the "
                "input changed since this output was started; write to a new output URI"
            )
        if self.metrics:
            self.metrics.shards_done.inc()
        return report

    def _from_manifest(self, mine: list[tuple[int, str]]) -> WorkerReport:
        shards = self.layout.read_json(self.layout.manifest)["inputShards"]
        log.info("the run is finalized already (%s)", self.layout.manifest)
        return WorkerReport(self.worker, [ShardReport.from_json(shards[i], self.layout.manifest) for i, _ in mine])

    async def _process(self, source: Source, todo: list[tuple[int, str]]) -> list[ShardReport]:
        limit = asyncio.Semaphore(self.concurrency)
        health = Health(self.policy.abort_after or max(16, self.concurrency))
        window = asyncio.Semaphore(self.window)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="curate-cpu") as pool:
            async with open_session(self.concurrency) as session:
                clients = {
                    name: ChatClient(session, url, name, limit=limit, health=health, policy=self.policy,
                                     metrics=self.metrics)
                    for name, url in self.urls.items()
                }  # fmt: skip
                pipeline = Pipeline(self.run.spec.steps, clients, pool)
                writers = []
                try:
                    async with asyncio.TaskGroup() as group:
                        for index, shard in todo:
                            queue: asyncio.Queue[asyncio.Task[Result] | None] = asyncio.Queue()
                            writers.append(group.create_task(self._write(index, shard, queue, window)))
                            async for chunk in chunks(shard, read_rows(source, shard)):
                                for row, item in chunk:
                                    await window.acquire()
                                    queue.put_nowait(group.create_task(self._one(pipeline, shard, row, item)))
                            queue.put_nowait(None)
                except BaseExceptionGroup as group_error:
                    raise first_error(group_error) from None
        return [w.result() for w in writers]

    @staticmethod
    async def _one(pipeline: Pipeline, shard: str, row: int, item: Record | RecordError) -> Result:
        if isinstance(item, RecordError):
            return Result(id=f"{shard}#{row}", outcome="rejected", reason="bad_record")
        return await pipeline.run(item)

    async def _write(
        self, index: int, shard: str, queue: asyncio.Queue[asyncio.Task[Result] | None], window: asyncio.Semaphore
    ) -> ShardReport:
        start = time.perf_counter()
        report = ShardReport(index, shard, Counts())
        steps: dict[str, dict[str, float]] = defaultdict(lambda: {"records": 0, "seconds": 0.0})
        rejects: list[dict[str, str]] = []
        batch: list[dict[str, Any]] = []
        with ParquetShard(self.layout, self.layout.work(index), self.schema) as out:
            while (task := await queue.get()) is not None:
                result = await task
                window.release()
                report.counts.add(result.outcome, result.reason)
                if self.metrics:
                    self.metrics.record(result.outcome, result.reason)
                for key, seconds in result.seconds.items():
                    steps[key]["records"] += 1
                    steps[key]["seconds"] += seconds
                if result.record is not None:
                    batch.append({**record_row(result.record), **result.signatures})
                elif result.outcome == "rejected":
                    rejects.append({"id": result.id, "reason": result.reason})
                if len(batch) >= ROW_GROUP:
                    await asyncio.to_thread(out.write_rows, batch)
                    batch = []
            await asyncio.to_thread(out.write_rows, batch)
            report.steps = {k: {"records": v["records"], "seconds": round(v["seconds"], 3)} for k, v in steps.items()}
            report.seconds = time.perf_counter() - start
            await asyncio.to_thread(self._commit, out, report, rejects)
        if self.metrics:
            self.metrics.shards_done.inc()
        c = report.counts
        log.info("input shard %d (%s): in %d, kept %d, dropped %d, rejected %d in %.1f s", index, shard, c.records_in,
                 c.kept, sum(c.dropped.values()), sum(c.rejected.values()), report.seconds)  # fmt: skip
        return report

    def _commit(self, out: ParquetShard, report: ShardReport, rejects: list[dict[str, str]]) -> None:
        # Rejects first: the shard's own file is the mark that the whole shard is done.
        path = self.layout.rejects(report.index)
        if rejects:
            self.layout.write_table(path, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))
        else:
            self.layout.remove(path)
        out.commit({**report.to_json(), "worker": self.worker})
