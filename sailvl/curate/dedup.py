"""The global half of dedup, run once by finalize over every worker's signatures.

Deterministic whatever the number of workers or the order they finished in: records are visited in id order
(ties by input shard and row) and a record is dropped when it duplicates one already kept, so of every group of
duplicates the first by id survives. Each dedup step of the spec is applied in turn to the records the earlier
ones kept.

Near-duplicate search stays sub-quadratic: perceptual hashes within Hamming distance d share at least one of d+1
bit bands exactly (pigeonhole), so only records sharing a band are compared; MinHash candidates come from an LSH
tuned for recall, then the estimated Jaccard similarity is checked against the threshold.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from sailvl.api.curationrun import DedupStep
from sailvl.curate.images import hamming
from sailvl.curate.signatures import MINHASH_SCHEME, MINHASH_SEED, NUM_PERM, jaccard, minhash_values

# (false positive, false negative) weights for choosing the LSH bands: candidates are verified, so favour recall.
LSH_WEIGHTS = (0.1, 0.9)


@dataclass(frozen=True, slots=True)
class Entry:
    """One kept record of a worker's output, as the global pass sees it."""

    id: str
    shard: int
    row: int
    signatures: dict[str, Any] = field(default_factory=dict)


class PhashIndex:
    def __init__(self, distance: int) -> None:
        self.distance = distance
        bands = min(distance + 1, 64)
        edges = np.linspace(0, 64, bands + 1).round().astype(int)
        self.masks = [((1 << int(hi - lo)) - 1) << int(lo) for lo, hi in itertools.pairwise(edges)]
        self.buckets: list[dict[int, list[list[int]]]] = [defaultdict(list) for _ in self.masks]
        self.everything: list[list[int]] = []

    def _candidates(self, hashes: list[int]) -> list[list[int]]:
        if self.distance >= 64:
            return self.everything
        seen: dict[int, list[int]] = {}
        for mask, bucket in zip(self.masks, self.buckets, strict=True):
            for other in bucket.get(hashes[0] & mask, ()):
                seen[id(other)] = other
        return list(seen.values())

    def is_duplicate(self, hashes: list[int]) -> bool:
        return any(self._close(hashes, other) for other in self._candidates(hashes))

    def _close(self, a: list[int], b: list[int]) -> bool:
        return len(a) == len(b) and all(hamming(x, y) <= self.distance for x, y in zip(a, b, strict=True))

    def add(self, hashes: list[int]) -> None:
        self.everything.append(hashes)
        for mask, bucket in zip(self.masks, self.buckets, strict=True):
            bucket[hashes[0] & mask].append(hashes)


class TextIndex:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
        self.values: list[np.ndarray] = []

    def _minhash(self, values: np.ndarray) -> MinHash:
        return MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, hashvalues=values, scheme=MINHASH_SCHEME)

    def is_duplicate(self, values: np.ndarray) -> bool:
        candidates = sorted(self.lsh.query(self._minhash(values)))
        return any(jaccard(values, self.values[key]) >= self.threshold for key in candidates)

    def add(self, values: np.ndarray) -> None:
        self.lsh.insert(len(self.values), self._minhash(values))
        self.values.append(values)


def _step_pass(index: int, step: DedupStep, entries: Sequence[Entry], dropped: dict[tuple[int, int], str]) -> None:
    exact: set[bytes] = set()
    phash = PhashIndex(step.phash_distance) if step.image == "phash" else None
    text = TextIndex(step.threshold) if step.text == "minhash" else None
    for entry in entries:
        key = (entry.shard, entry.row)
        if key in dropped:
            continue
        digest = entry.signatures.get(f"_dedup{index}_exact")
        hashes = entry.signatures.get(f"_dedup{index}_phash")
        minhash = entry.signatures.get(f"_dedup{index}_minhash")
        values = minhash_values(minhash) if minhash is not None else None
        if (digest is not None and digest in exact) or (phash is not None and hashes and phash.is_duplicate(hashes)):
            dropped[key] = "dedup_image"
            continue
        if text is not None and values is not None and text.is_duplicate(values):
            dropped[key] = "dedup_text"
            continue
        if digest is not None:
            exact.add(digest)
        if phash is not None and hashes:
            phash.add(hashes)
        if text is not None and values is not None:
            text.add(values)


def global_dedup(entries: Sequence[Entry], steps: Sequence[tuple[int, DedupStep]]) -> dict[tuple[int, int], str]:
    """(shard, row) -> reason (`dedup_image` or `dedup_text`) for every record the dedup steps drop."""
    ordered = sorted(entries, key=lambda e: (e.id, e.shard, e.row))
    dropped: dict[tuple[int, int], str] = {}
    for index, step in steps:
        _step_pass(index, step, ordered, dropped)
    return dropped
