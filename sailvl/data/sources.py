"""Sources: where records come from (parquet, jsonl, webdataset over fsspec URIs, or `synthetic://shapes`).

A `Source` lists its shards (files, or slices of a synthetic split) and reads the records of one shard, in order
(`read`) or one at a time (`get`). Curation workers split shards round-robin (`shards_of_worker`); trainers sample
rows through `sailvl.data.mixture`, which needs only each shard's `blocks`: the row counts of the units inside a
shard that can be read at random cheaply (a parquet row group; a whole jsonl or tar file).

URIs: `s3://`, `gs://` (with s3fs / gcsfs), `hf://org/repo/path` (a Hugging Face dataset repository),
`pvc://claim/path` (mapped to a local folder by `sailvl.data.uris.resolve_uri`), `file://` or a plain path. A URI
names one file, a folder (every file of the format below it, skipping names that start with `_` or `.`, such as
`_manifest.json` and partial files), a glob (`part-*.parquet`) or a brace range (`shard-{000..099}.tar`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec

from sailvl.api.common import DataRef
from sailvl.api.uris import check_uri, scheme_of
from sailvl.data.records import FIELD_NAMES, Fields, Record
from sailvl.data.synthetic import SyntheticSpec, generate, parse_synthetic_uri
from sailvl.data.uris import PvcRoot, resolve_uri

FORMATS = ("parquet", "jsonl", "webdataset")
SUFFIXES = {
    "parquet": (".parquet",),
    "jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson"),
    "webdataset": (".tar", ".tar.gz", ".tgz"),
}


class SourceError(ValueError):
    """A source that cannot be read: a missing file or folder, no shards, an unknown format or shard."""


class Source(ABC):
    """Records from one URI. Shards are the unit of work; rows are numbered from 0 within a shard."""

    uri: str

    @abstractmethod
    def shards(self) -> list[str]:
        """Shard names in a stable order (file paths for files)."""

    @abstractmethod
    def blocks(self, shard: str) -> tuple[int, ...]:
        """Row counts of the shard's blocks, in order; random access within a block is cheap."""

    @abstractmethod
    def read(self, shard: str) -> Iterator[Record]:
        """Every record of `shard`, in order."""

    @abstractmethod
    def get(self, shard: str, row: int) -> Record:
        """Record `row` of `shard` (sequential rows of one block are the fast path)."""

    def rows(self, shard: str) -> int:
        return sum(self.blocks(shard))

    def __iter__(self) -> Iterator[Record]:
        for shard in self.shards():
            yield from self.read(shard)


def shards_of_worker(source: Source, worker: int, workers: int) -> list[str]:
    """The shards worker `worker` of `workers` handles: every workers-th, starting at its own index."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker must be in [0, {workers}); found {worker}")
    return source.shards()[worker::workers]


class SyntheticSource(Source):
    """`synthetic://shapes?...`: shard i holds records [i*shard, (i+1)*shard) of the split, generated on demand."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        self.uri = spec.uri()

    def shards(self) -> list[str]:
        return [f"shard-{i:05d}" for i in range(self.spec.num_shards)]

    def _range(self, shard: str) -> range:
        match = re.fullmatch(r"shard-(\d+)", shard)
        if not match or int(match.group(1)) >= self.spec.num_shards:
            raise SourceError(
                f"{self.uri} has shards shard-00000 to shard-{self.spec.num_shards - 1:05d}; found {shard!r}"
            )
        return self.spec.shard_range(int(match.group(1)))

    def blocks(self, shard: str) -> tuple[int, ...]:
        return (len(self._range(shard)),)

    def read(self, shard: str) -> Iterator[Record]:
        for index in self._range(shard):
            yield generate(self.spec, index)

    def get(self, shard: str, row: int) -> Record:
        indices = self._range(shard)
        if not 0 <= row < len(indices):
            raise IndexError(f"{self.uri} {shard} has {len(indices)} rows; found row {row}")
        return generate(self.spec, indices[row])


def open_source(
    ref: DataRef | str,
    *,
    format: str | None = None,
    fields: Fields | None = None,
    require: Sequence[str] = (),
    pvc_root: PvcRoot = None,
) -> Source:
    """The source a DataRef (or a URI with `format` and `fields`) names.

    `require` lists the parts ("image", "text", "conversations") every record must have, e.g. what a template needs;
    field names a DataRef sets explicitly are required too. A CurationRun reference must be resolved to its output
    URI first (the runner and the operator do that).
    """
    if isinstance(ref, DataRef):
        if ref.uri is None:
            raise SourceError(f"curationRun/{ref.curation_run} must be resolved to its output URI before reading")
        explicit = {
            part: getattr(ref, f"{part}_field") for part in FIELD_NAMES if getattr(ref, f"{part}_field") is not None
        }
        fields = Fields(**explicit, required=frozenset(explicit))
        uri, format = ref.uri, ref.format
    else:
        uri = check_uri(ref)
    fields = fields or Fields()
    unknown = set(require) - set(FIELD_NAMES)
    if unknown:
        raise ValueError(f"require must list parts among {', '.join(FIELD_NAMES)}; found {sorted(unknown)}")
    fields = Fields(**{**_names(fields), "required": fields.required | frozenset(require)})
    if scheme_of(uri) == "synthetic":
        return SyntheticSource(parse_synthetic_uri(uri))
    if format not in FORMATS:
        raise SourceError(f"format must be one of {', '.join(FORMATS)} for {uri}; found {format!r}")
    from sailvl.data.readers import READERS

    fs, paths = list_files(uri, SUFFIXES[format], pvc_root=pvc_root)
    return READERS[format](uri, fs, paths, fields)


def _names(fields: Fields) -> dict[str, Any]:
    return {k: getattr(fields, k) for k in ("image", "text", "conversations", "id", "meta")}


def to_fsspec(uri: str, pvc_root: PvcRoot = None) -> str:
    """The fsspec URL (or local path) for a sailvl URI; `pvc_root` maps claims to folders (see `resolve_uri`)."""
    scheme = scheme_of(uri)
    if scheme in ("pvc", "file"):
        return str(resolve_uri(uri, pvc_root))
    if scheme == "hf":
        rest = uri.removeprefix("hf://")
        return f"hf://{rest}" if rest.startswith("datasets/") else f"hf://datasets/{rest}"
    if scheme in ("s3", "gs"):
        return uri
    raise SourceError(f"records cannot be read from {uri!r}: expected a file, pvc://, s3://, gs:// or hf:// URI")


def list_files(
    uri: str, suffixes: tuple[str, ...], *, pvc_root: PvcRoot = None
) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The filesystem and the sorted files `uri` names: a file, a folder, a glob or a brace range."""
    location = to_fsspec(uri, pvc_root)
    fs, _ = fsspec.core.url_to_fs(location)
    paths: list[str] = []
    for pattern in expand_braces(location):
        path = fs._strip_protocol(pattern)
        if any(ch in path for ch in "*?["):
            paths += [p for p in fs.glob(path) if p.endswith(suffixes)]
        elif fs.isdir(path):
            paths += [p for p in fs.find(path) if p.endswith(suffixes) and not _hidden(p[len(path) :])]
        elif fs.exists(path):
            paths.append(path)
        else:
            raise SourceError(f"no such file or folder: {uri} (looked for {path})")
    if not paths:
        raise SourceError(f"no {' / '.join(suffixes)} files found at {uri}")
    return fs, sorted(set(paths))


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def expand_braces(pattern: str) -> list[str]:
    """Expand webdataset-style ranges: `a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar (zero padding kept)."""
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not match:
        return [pattern]
    low, high = match.group(1), match.group(2)
    if int(high) < int(low):
        raise SourceError(f"brace range {match.group(0)} in {pattern!r} runs backwards")
    width = len(low) if low.startswith("0") else 0
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for i in range(int(low), int(high) + 1) for p in expand_braces(f"{head}{i:0{width}d}{tail}")]
