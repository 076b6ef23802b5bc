"""The parameters of `synthetic://shapes?...`, parsed strictly: an unknown key or a bad value is an error naming it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlsplit

from sailvl.api.benchmarks import SYNTHETIC_BENCHMARKS

TRAIN_SPLITS = ("alt", "reference", "sft-knowledge", "sft-instruction", "sft-preference", "text")
# `test` is what an EvalSuite names when the benchmark (shapes_*) it asks for picks the items.
SPLITS = (*TRAIN_SPLITS, *SYNTHETIC_BENCHMARKS, "test")
ENCODINGS = ("png", "jpeg")
MIN_SIDE, MAX_SIDE = 96, 2048
MAX_N = 1_000_000_000
PARAMS = {
    "n": "number of records (1 to 1e9; default 1024)",
    "seed": "non-negative integer (default 0)",
    "split": f"one of {', '.join(SPLITS)} (default alt)",
    "size": f"image side in pixels, one number or a range such as 224-448 ({MIN_SIDE} to {MAX_SIDE}; default 224)",
    "encoding": "png or jpeg (default png)",
    "shard": "records per shard (default 256)",
}


class SyntheticUriError(ValueError):
    """A `synthetic://` URI that names an unknown generator, parameter or value."""


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """What one `synthetic://shapes` URI asks for; `uri()` writes it back in canonical form."""

    n: int = 1024
    seed: int = 0
    split: str = "alt"
    min_side: int = 224
    max_side: int = 224
    encoding: str = "png"
    shard: int = 256

    @property
    def num_shards(self) -> int:
        return math.ceil(self.n / self.shard)

    def shard_range(self, shard: int) -> range:
        """Record indices of shard number `shard`."""
        if not 0 <= shard < self.num_shards:
            raise ValueError(f"shard index must be in [0, {self.num_shards}); found {shard}")
        return range(shard * self.shard, min(self.n, (shard + 1) * self.shard))

    def with_split(self, split: str) -> SyntheticSpec:
        _check_split(split)
        return replace(self, split=split)

    def uri(self) -> str:
        size = str(self.min_side) if self.min_side == self.max_side else f"{self.min_side}-{self.max_side}"
        return (
            f"synthetic://shapes?n={self.n}&seed={self.seed}&split={self.split}&size={size}"
            f"&encoding={self.encoding}&shard={self.shard}"
        )


def parse_synthetic_uri(uri: str) -> SyntheticSpec:
    """Parse `synthetic://shapes?n=...&seed=...&split=...&size=...&encoding=...&shard=...`."""
    parts = urlsplit(uri)
    if parts.scheme != "synthetic" or parts.netloc != "shapes" or parts.path not in ("", "/"):
        raise SyntheticUriError(f"expected synthetic://shapes?key=value&...; found {uri!r}")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise SyntheticUriError(
            f"synthetic:// parameters must read key=value&key=value; found {parts.query!r}"
        ) from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in PARAMS:
            known = "; ".join(f"{k}: {v}" for k, v in PARAMS.items())
            raise SyntheticUriError(f"unknown synthetic:// parameter {key!r} in {uri!r}; expected one of {known}")
        if key in values:
            raise SyntheticUriError(f"synthetic:// parameter {key!r} is given twice in {uri!r}")
        values[key] = value
    spec = SyntheticSpec()
    if "n" in values:
        spec = replace(spec, n=_integer(values["n"], "n", 1, MAX_N))
    if "seed" in values:
        spec = replace(spec, seed=_integer(values["seed"], "seed", 0, 2**63 - 1))
    if "split" in values:
        spec = replace(spec, split=_check_split(values["split"]))
    if "size" in values:
        low, high = _size(values["size"])
        spec = replace(spec, min_side=low, max_side=high)
    if "encoding" in values:
        if values["encoding"] not in ENCODINGS:
            raise SyntheticUriError(
                f"synthetic:// parameter 'encoding' must be png or jpeg; found {values['encoding']!r}"
            )
        spec = replace(spec, encoding=values["encoding"])
    if "shard" in values:
        spec = replace(spec, shard=_integer(values["shard"], "shard", 1, MAX_N))
    return spec


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise SyntheticUriError(f"synthetic:// parameter 'split' must be one of {', '.join(SPLITS)}; found {split!r}")
    return split


def _integer(text: str, key: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise SyntheticUriError(f"synthetic:// parameter {key!r} must be an integer in [{low}, {high}]; found {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise SyntheticUriError(f"synthetic:// parameter {key!r} must be in [{low}, {high}]; found {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    low_text, sep, high_text = text.partition("-")
    low = _integer(low_text, "size", MIN_SIDE, MAX_SIDE)
    high = _integer(high_text, "size", MIN_SIDE, MAX_SIDE) if sep else low
    if high < low:
        raise SyntheticUriError(f"synthetic:// parameter 'size' must read low-high with low <= high; found {text!r}")
    return low, high
