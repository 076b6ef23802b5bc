"""The per-record half of dedup: the signatures a dedup step attaches to every record it passes, stored in the
workers' shards as columns `_dedup<step>_<kind>` until the global pass (`sailvl.curate.dedup`) reads them back.

- exact: SHA-256 of the decoded pixels (one image), or of its images' hashes in order (several);
- phash: the 64-bit perceptual hash of each image;
- minhash: MinHash (128 permutations, fixed seed) of the text's word 3-grams, lower-cased, as uint32 bytes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import pyarrow as pa
from datasketch import MinHash

from sailvl.api.curationrun import DedupStep
from sailvl.curate.images import ImageFacts

NUM_PERM = 128
MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"  # datasketch 2 names its hash scheme; stored signatures must be read with the same one
SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+")


def columns(step_index: int, step: DedupStep) -> dict[str, pa.DataType]:
    """The signature columns of one dedup step, by name."""
    out: dict[str, pa.DataType] = {}
    if step.image == "exact":
        out[f"_dedup{step_index}_exact"] = pa.binary()
    elif step.image == "phash":
        out[f"_dedup{step_index}_phash"] = pa.list_(pa.uint64())
    if step.text == "minhash":
        out[f"_dedup{step_index}_minhash"] = pa.binary()
    return out


def image_signature(step_index: int, step: DedupStep, facts: list[ImageFacts]) -> dict[str, Any]:
    if step.image == "exact":
        digests = [f.exact for f in facts]
        assert all(d is not None for d in digests), "exact hashes must be computed when a dedup step asks for them"
        if not digests:
            value = None
        elif len(digests) == 1:
            value = digests[0]
        else:
            value = hashlib.sha256(b"".join(d for d in digests if d)).digest()
        return {f"_dedup{step_index}_exact": value}
    if step.image == "phash":
        hashes = [f.phash for f in facts]
        assert all(h is not None for h in hashes), "perceptual hashes must be computed when a dedup step asks for them"
        return {f"_dedup{step_index}_phash": hashes or None}
    return {}


def shingles(text: str) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}


def text_minhash(text: str | None) -> bytes | None:
    grams = shingles(text) if text else set()
    if not grams:
        return None
    minhash = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
    minhash.update_batch(list(grams))
    return np.asarray(minhash.hashvalues, dtype="<u4").tobytes()


def minhash_values(signature: bytes) -> np.ndarray:
    return np.frombuffer(signature, dtype="<u4")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The MinHash estimate of the Jaccard similarity of two texts."""
    return float(np.count_nonzero(a == b)) / len(a)
