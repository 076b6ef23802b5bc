"""Append-only JSON-lines files that make an evaluation resumable: `<benchmark>.jsonl` holds one prediction per
answered item, `<benchmark>.judge.jsonl` every judge reply.

A line is written whole and flushed as soon as its answer arrives, so a killed run loses at most the line being
written; on reopening, a torn last line (no newline) is cut off and its item asked again. Nothing is ever taken as
complete from the file alone: the runner compares the items answered with the items the benchmark has, and each
prediction carries a fingerprint of what was asked, so an item whose prompt, image or settings changed is asked again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


def fingerprint(*parts: str | bytes | int) -> str:
    """A short stable digest of what determines an answer."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:24]


class JsonlLog:
    """One JSON object per line, appended and flushed one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def read(self) -> Iterator[dict[str, Any]]:
        """Every complete record; a torn last line is removed from the file first."""
        if not self.path.exists():
            return
        self._cut_torn_tail()
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s line %d is not JSON; its item will be asked again", self.path, number)
                    continue
                if isinstance(record, dict):
                    yield record

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _cut_torn_tail(self) -> None:
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            # Walk back to the last newline: everything after it is a line cut short by a kill.
            position = size
            while position > 0:
                step = min(65536, position)
                handle.seek(position - step)
                chunk = handle.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    position = position - step + newline + 1
                    break
                position -= step
            log.warning("%s ends in a torn line (%d bytes); dropping it", self.path, size - position)
            handle.truncate(position)


class PredictionStore(JsonlLog):
    """`<benchmark>.jsonl`: {"index", "key", "prediction"} per answered item (+ "error" when the server refused)."""

    def answered(self, keys: dict[str, str]) -> dict[str, dict[str, Any]]:
        """The records whose index is among `keys` (index -> fingerprint) and whose fingerprint matches; the last
        record of an index wins."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.read():
            index = str(record.get("index"))
            if keys.get(index) == record.get("key") and isinstance(record.get("prediction"), str):
                found[index] = record
        return found


class JudgeCache(JsonlLog):
    """Judge replies by (prompt, temperature) digest, loaded once and extended as replies arrive."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.replies = {str(r["key"]): str(r["reply"]) for r in self.read() if "key" in r and "reply" in r}

    def get(self, key: str) -> str | None:
        return self.replies.get(key)

    def put(self, key: str, reply: str) -> None:
        self.replies[key] = reply
        self.append({"key": key, "reply": reply})


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary name in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
