"""Readers of record files: parquet (pyarrow), jsonl and webdataset tar shards, over any fsspec filesystem.

Each reader keeps a small cache for random access (`get`): the last parquet row groups read, and per jsonl or tar
file an index of where each row starts, so a trainer reading a shard's rows in shuffled order seeks instead of
rescanning. Compressed jsonl and tar files cannot seek; their rows are held in memory one file at a time.
"""

from __future__ import annotations

import bisect
import json
import posixpath
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import fsspec
import pyarrow.parquet as pq

from sailvl.data.records import Fields, Record, RecordError, parse_row
from sailvl.data.sources import Source, SourceError

_COMPRESSED = (".gz", ".zst", ".tgz", ".bz2", ".xz")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


class _Cache(OrderedDict[Any, Any]):
    """A tiny LRU map."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def fetch(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class FileSource(Source):
    """Shared plumbing: shard paths on one filesystem, field names, and images given as paths."""

    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, paths: list[str], fields: Fields) -> None:
        self.uri, self.fs, self.paths, self.fields = uri, fs, paths, fields
        self._known = set(paths)
        self._blocks: dict[str, tuple[int, ...]] = {}

    def shards(self) -> list[str]:
        return list(self.paths)

    def blocks(self, shard: str) -> tuple[int, ...]:
        if shard not in self._blocks:
            self._check(shard)
            self._blocks[shard] = self._count(shard)
        return self._blocks[shard]

    def _count(self, shard: str) -> tuple[int, ...]:
        raise NotImplementedError

    def _check(self, shard: str) -> None:
        if shard not in self._known:
            raise SourceError(f"{shard!r} is not a shard of {self.uri} ({len(self.paths)} shards)")

    def _open(self, shard: str) -> BinaryIO:
        compression = "infer" if shard.endswith(_COMPRESSED) else None
        handle: BinaryIO = self.fs.open(shard, "rb", compression=compression)
        return handle

    def _loader(self, shard: str) -> Callable[[str], bytes]:
        """Reads an image given as a path: relative to the shard's folder, or absolute on the same filesystem."""

        def load(path: str) -> bytes:
            if "://" in path:
                with fsspec.open(path, "rb") as handle:
                    data: bytes = handle.read()
                    return data
            full = path if path.startswith("/") else posixpath.join(posixpath.dirname(shard), path)
            data = self.fs.cat_file(full)
            return data

        return load

    def _row(self, row: dict[str, Any], shard: str, index: int | str) -> Record:
        return parse_row(row, self.fields, file=shard, row_index=index, load=self._loader(shard))


class ParquetSource(FileSource):
    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, paths: list[str], fields: Fields) -> None:
        super().__init__(uri, fs, paths, fields)
        self._groups = _Cache(2)

    def _count(self, shard: str) -> tuple[int, ...]:
        with self._open(shard) as handle:
            meta = pq.ParquetFile(handle).metadata
            return tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))

    def _columns(self, shard: str, file: pq.ParquetFile) -> list[str]:
        """The columns a record needs that the file has; a required one it lacks is an error."""
        names = set(file.schema_arrow.names)
        wanted = [self.fields.image, "images", self.fields.text, self.fields.conversations, self.fields.id]
        wanted.append(self.fields.meta)
        for part in sorted(self.fields.required):
            column = getattr(self.fields, part)
            if column not in names:
                raise RecordError(
                    shard, 0, column, f"required ({part}) but the file has no such column: {sorted(names)}"
                )
        return [c for c in dict.fromkeys(wanted) if c in names]

    def read(self, shard: str) -> Iterator[Record]:
        self._check(shard)
        with self._open(shard) as handle:
            file = pq.ParquetFile(handle)
            row = 0
            for batch in file.iter_batches(batch_size=256, columns=self._columns(shard, file)):
                for values in batch.to_pylist():
                    yield self._row(values, shard, row)
                    row += 1

    def get(self, shard: str, row: int) -> Record:
        sizes = self.blocks(shard)
        starts = [0]
        for size in sizes:
            starts.append(starts[-1] + size)
        if not 0 <= row < starts[-1]:
            raise IndexError(f"{shard} has {starts[-1]} rows; found row {row}")
        group = bisect.bisect_right(starts, row) - 1
        rows = self._groups.fetch((shard, group), lambda: self._read_group(shard, group))
        return self._row(rows[row - starts[group]], shard, row)

    def _read_group(self, shard: str, group: int) -> list[dict[str, Any]]:
        with self._open(shard) as handle:
            file = pq.ParquetFile(handle)
            rows: list[dict[str, Any]] = file.read_row_group(group, columns=self._columns(shard, file)).to_pylist()
            return rows


class JsonlSource(FileSource):
    """One JSON object per line; blank lines are skipped and do not count as rows."""

    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, paths: list[str], fields: Fields) -> None:
        super().__init__(uri, fs, paths, fields)
        self._index = _Cache(8)  # shard -> line start offsets, or the lines of a compressed file

    def _lines(self, shard: str) -> Iterator[tuple[int, int, bytes]]:
        """(row, offset, line) for every non-blank line; offset is meaningless for compressed files."""
        row, offset = 0, 0
        with self._open(shard) as handle:
            for line in handle:
                if line.strip():
                    yield row, offset, line
                    row += 1
                offset += len(line)

    def _count(self, shard: str) -> tuple[int, ...]:
        return (sum(1 for _ in self._lines(shard)),)

    def _decode(self, line: bytes, shard: str, row: int) -> Record:
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RecordError(
                shard, row, "<line>", f"expected one JSON object per line; found invalid JSON ({e})"
            ) from None
        if not isinstance(value, dict):
            raise RecordError(shard, row, "<line>", f"expected a JSON object; found {type(value).__name__}")
        return self._row(value, shard, row)

    def read(self, shard: str) -> Iterator[Record]:
        self._check(shard)
        for row, _, line in self._lines(shard):
            yield self._decode(line, shard, row)

    def get(self, shard: str, row: int) -> Record:
        self._check(shard)
        compressed = shard.endswith(_COMPRESSED)

        def build() -> list[Any]:
            return [line if compressed else offset for _, offset, line in self._lines(shard)]

        index = self._index.fetch(shard, build)
        if not 0 <= row < len(index):
            raise IndexError(f"{shard} has {len(index)} rows; found row {row}")
        if compressed:
            return self._decode(index[row], shard, row)
        with self._open(shard) as handle:
            handle.seek(index[row])
            return self._decode(handle.readline(), shard, row)


class WebDatasetSource(FileSource):
    """Tar shards whose consecutive members sharing a key (`dir/key.ext`) form one sample; fields are extensions.

    Default fields: image = the first of jpg, jpeg, png, webp present; text = `txt`; conversations = `json` (a list
    of turns, or an object whose `conversations` holds them and whose other keys become `meta`).
    """

    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, paths: list[str], fields: Fields) -> None:
        super().__init__(uri, fs, paths, fields)
        self._index = _Cache(4)
        defaults = Fields()
        self._image_ext = None if fields.image == defaults.image else fields.image
        self._text_ext = "txt" if fields.text == defaults.text else fields.text
        self._conv_ext = "json" if fields.conversations == defaults.conversations else fields.conversations

    def _samples(self, shard: str, *, with_data: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, {ext: bytes, or (offset, size) when not with_data}) per sample, in order."""
        key: str | None = None
        members: dict[str, Any] = {}
        with self._open(shard) as handle, self._tar(shard, handle) as tar:
            for info in tar:
                if not info.isfile():
                    continue
                directory, _, base = info.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot or base.startswith("."):
                    continue
                name = f"{directory}/{stem}" if directory else stem
                if name != key and key is not None:
                    yield key, members
                    members = {}
                key = name
                if with_data:
                    file = tar.extractfile(info)
                    assert file is not None
                    members[ext] = file.read()
                else:
                    members[ext] = (info.offset_data, info.size)
        if key is not None:
            yield key, members

    @staticmethod
    def _tar(shard: str, handle: BinaryIO) -> tarfile.TarFile:
        # A plain tar is walked header to header with seeks; a compressed one can only be streamed.
        if shard.endswith(_COMPRESSED):
            return tarfile.open(fileobj=handle, mode="r|*")
        return tarfile.open(fileobj=handle, mode="r:")

    def _count(self, shard: str) -> tuple[int, ...]:
        return (sum(1 for _ in self._samples(shard, with_data=False)),)

    def _record(self, key: str, members: dict[str, bytes], shard: str, row: int) -> Record:
        image_ext = self._image_ext or next((e for e in IMAGE_EXTENSIONS if e in members), IMAGE_EXTENSIONS[0])
        text_ext, conv_ext = self._text_ext, self._conv_ext
        where = f"{row} (key {key})"
        values: dict[str, Any] = {"__key__": key, image_ext: members.get(image_ext)}
        if text_ext in members:
            values[text_ext] = self._text(members[text_ext], shard, where, text_ext)
        if conv_ext in members:
            value = _json(self._text(members[conv_ext], shard, where, conv_ext), shard, where, conv_ext)
            if isinstance(value, dict):
                values["__meta__"] = {k: v for k, v in value.items() if k != "conversations"}
                value = value.get("conversations")
            values[conv_ext] = value
        fields = Fields(
            image=image_ext, text=text_ext, conversations=conv_ext, id="__key__", meta="__meta__",
            required=self.fields.required,
        )  # fmt: skip
        return parse_row(values, fields, file=shard, row_index=where)

    @staticmethod
    def _text(data: bytes, shard: str, row: str, ext: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordError(shard, row, ext, f"expected UTF-8 text; found undecodable bytes ({e})") from None

    def read(self, shard: str) -> Iterator[Record]:
        self._check(shard)
        for row, (key, members) in enumerate(self._samples(shard, with_data=True)):
            yield self._record(key, members, shard, row)

    def get(self, shard: str, row: int) -> Record:
        self._check(shard)
        compressed = shard.endswith(_COMPRESSED)
        index = self._index.fetch(shard, lambda: list(self._samples(shard, with_data=compressed)))
        if not 0 <= row < len(index):
            raise IndexError(f"{shard} has {len(index)} rows; found row {row}")
        key, members = index[row]
        if not compressed:
            with self._open(shard) as handle:
                data = {}
                for ext, (offset, size) in members.items():
                    handle.seek(offset)
                    data[ext] = handle.read(size)
                members = data
        return self._record(key, members, shard, row)


def _json(text: str, shard: str, row: str, ext: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(shard, row, ext, f"expected JSON; found invalid JSON ({e})") from None


READERS: dict[str, type[FileSource]] = {"parquet": ParquetSource, "jsonl": JsonlSource, "webdataset": WebDatasetSource}
