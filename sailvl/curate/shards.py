"""The output folder of a run, on any fsspec filesystem (a local path, file://, s3://, gs:// ...):

    <output>/_work/in-NNNNN.parquet      one per input shard: the records a worker kept, with dedup signatures,
                                         and its counts and timings in the file's key-value metadata
    <output>/_rejects/in-NNNNN.parquet   id and reason of each record rejected in that input shard
    <output>/part-NNNNN.parquet          the final shards (finalize), samplesPerShard records each
    <output>/_manifest.json              written last by finalize: the run is complete when it exists

Every file is written under a hidden temporary name in its folder and renamed when complete, so a file that
exists is whole: a rerun skips the input shards whose `_work` file exists. Names starting with `_` or `.` are
skipped by readers of the folder, so the output reads as a plain parquet data set.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from sailvl.data.records import Record
from sailvl.data.sources import to_fsspec

META_KEY = b"sailvl.curate"
ROW_GROUP = 256
RECORD_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("image", pa.binary()),
    pa.field("images", pa.list_(pa.binary())),
    pa.field("text", pa.string()),
    pa.field("conversations", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    pa.field("meta", pa.string()),  # JSON: meta holds whatever the input and the steps put there
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS)
RECORD_COLUMNS = [f.name for f in RECORD_FIELDS]


def record_row(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "image": record.images[0] if len(record.images) == 1 else None,
        "images": list(record.images) if len(record.images) > 1 else None,
        "text": record.text,
        "conversations": record.conversations,
        "meta": json.dumps(record.meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    }


def work_schema(signature_columns: dict[str, pa.DataType]) -> pa.Schema:
    return pa.schema([*RECORD_FIELDS, *(pa.field(name, kind) for name, kind in signature_columns.items())])


class Layout:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(to_fsspec(uri))
        self.root = self.root.rstrip("/")

    def work(self, shard: int) -> str:
        return f"{self.root}/_work/in-{shard:05d}.parquet"

    def rejects(self, shard: int) -> str:
        return f"{self.root}/_rejects/in-{shard:05d}.parquet"

    def part(self, index: int) -> str:
        return f"{self.root}/part-{index:05d}.parquet"

    @property
    def manifest(self) -> str:
        return f"{self.root}/_manifest.json"

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def temporary(self, path: str) -> str:
        folder, name = posixpath.split(path)
        self.fs.makedirs(folder, exist_ok=True)
        return f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.tmp"

    def remove_temporaries(self, path: str) -> None:
        """Delete what writers of `path` killed before their rename left behind."""
        folder, name = posixpath.split(path)
        for stale in self.fs.glob(f"{folder}/.{name}.*.tmp"):
            self.fs.rm(stale)

    def commit(self, temporary: str, path: str) -> None:
        self.fs.mv(temporary, path)

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def write_bytes(self, path: str, data: bytes) -> None:
        temporary = self.temporary(path)
        with self.fs.open(temporary, "wb") as handle:
            handle.write(data)
        self.commit(temporary, path)

    def read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as handle:
            return json.loads(handle.read())

    def write_table(self, path: str, table: pa.Table, metadata: dict[str, Any] | None = None) -> None:
        with ParquetShard(self, path, table.schema) as shard:
            shard.write(table)
            shard.commit(metadata)

    def columns(self, path: str) -> list[str]:
        with self.fs.open(path, "rb") as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)

    def parts(self) -> list[str]:
        return sorted(self.fs.glob(f"{self.root}/part-*.parquet"))


class ParquetShard:
    """A parquet file written in batches under a temporary name; `commit` renames it, leaving it unfinished discards
    it."""

    def __init__(self, layout: Layout, path: str, schema: pa.Schema) -> None:
        self.layout, self.path, self.schema = layout, path, schema
        self.temporary = layout.temporary(path)
        self._handle = layout.fs.open(self.temporary, "wb")
        self._writer = pq.ParquetWriter(self._handle, schema, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=ROW_GROUP)
        self.rows += table.num_rows

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.write(pa.Table.from_pylist(rows, schema=self.schema))

    def commit(self, metadata: dict[str, Any] | None = None) -> None:
        if metadata is not None:
            self._writer.add_key_value_metadata({META_KEY: json.dumps(metadata, sort_keys=True).encode()})
        self._writer.close()
        self._handle.close()
        self.layout.commit(self.temporary, self.path)

    def discard(self) -> None:
        self._writer.close()
        self._handle.close()
        self.layout.remove(self.temporary)

    def __enter__(self) -> ParquetShard:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._handle.closed:
            self.discard()


def shard_metadata(layout: Layout, path: str) -> dict[str, Any]:
    with layout.fs.open(path, "rb") as handle:
        meta = pq.ParquetFile(handle).metadata.metadata or {}
    if META_KEY not in meta:
        raise ValueError(f"{path}: not a curation shard (no {META_KEY.decode()} metadata); remove it and rerun")
    value: dict[str, Any] = json.loads(meta[META_KEY])
    return value


def iter_batches(layout: Layout, path: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    with layout.fs.open(path, "rb") as handle:
        yield from pq.ParquetFile(handle).iter_batches(batch_size=ROW_GROUP, columns=columns)
