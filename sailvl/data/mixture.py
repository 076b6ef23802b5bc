"""A weighted mixture of sources: deterministic for a seed, resumable exactly, split across data-parallel ranks.

Order. Each source has an infinite stream of elements, epoch after epoch. Epoch e of a source visits every row
once: its shards in a shuffled order, within a shard its blocks (parquet row groups) in a shuffled order, within a
block its rows in a shuffled order; each permutation is keyed by (seed, source name, epoch, shard, block), so only
the shard list and the block of the moment are ever in memory, whatever the number of shards or rows.

Draws. Draw t picks a source with probability proportional to its weight, from a counter-keyed random stream (the
same on every rank). Every rank takes a different element of that source's stream: element `consumed + rank`,
after which `consumed` grows by the world size. Two ranks therefore never get the same element, and so never the
same row within an epoch; and the state is just the draw counter and one count per source, so `state_dict()` is
small and `load_state_dict()` resumes the exact sequence, on the same or a different number of ranks.

Everything is counter-based (numpy's Philox keyed by SeedSequence, raw 64-bit outputs only), so sequences do not
depend on numpy's sampling algorithms, which may change between versions.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from sailvl.data.records import Record
from sailvl.data.sources import Source

STATE_VERSION = 1
CHOICE_BLOCK = 4096  # draws generated per random call
_MIX, _SHARDS, _BLOCKS, _ROWS = 1, 2, 3, 4  # purposes, so the random streams never coincide


@dataclass(frozen=True)
class Component:
    """One source as the sampler sees it: a name, a weight and the block sizes of each shard."""

    name: str
    weight: float
    blocks: Sequence[tuple[int, ...]]

    @property
    def rows(self) -> int:
        return sum(sum(b) for b in self.blocks)


class SampleRef(NamedTuple):
    """Which row a draw picked: shard is an index into the source's `shards()`."""

    source: str
    shard: int
    row: int
    epoch: int


def _key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _raw(n: int, *key: int) -> np.ndarray:
    return np.random.Philox(np.random.SeedSequence(list(key))).random_raw(n)


def _permutation(n: int, *key: int) -> np.ndarray:
    return np.argsort(_raw(n, *key), kind="stable")


class _Lru(OrderedDict[Any, Any]):
    def get_or(self, key: Any, make: Any, size: int = 4) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > size:
            self.popitem(last=False)
        return value


class EpochOrder:
    """Maps element k of one source's stream to (epoch, shard, row)."""

    def __init__(self, component: Component, seed: int) -> None:
        self.component, self.seed, self.name_key = component, seed, _key(component.name)
        self.rows = component.rows
        self.shard_rows = np.array([sum(b) for b in component.blocks], dtype=np.int64)
        self._cache = _Lru()

    def locate(self, k: int) -> SampleRef:
        epoch, pos = divmod(k, self.rows)
        order, ends = self._cache.get_or(("epoch", epoch), lambda: self._shard_order(epoch))
        j = int(np.searchsorted(ends, pos, side="right"))
        shard = int(order[j])
        offset = pos - (int(ends[j - 1]) if j else 0)
        block_order, block_ends, block_starts = self._cache.get_or(
            ("shard", epoch, shard), lambda: self._block_order(epoch, shard)
        )
        jb = int(np.searchsorted(block_ends, offset, side="right"))
        block = int(block_order[jb])
        within = offset - (int(block_ends[jb - 1]) if jb else 0)
        size = self.component.blocks[shard][block]
        rows = self._cache.get_or(
            ("block", epoch, shard, block),
            lambda: _permutation(size, self.seed, self.name_key, _ROWS, epoch, shard, block),
        )
        return SampleRef(self.component.name, shard, int(block_starts[block]) + int(rows[within]), epoch)

    def _shard_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        order = _permutation(len(self.shard_rows), self.seed, self.name_key, _SHARDS, epoch)
        return order, np.cumsum(self.shard_rows[order])

    def _block_order(self, epoch: int, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sizes = np.array(self.component.blocks[shard], dtype=np.int64)
        order = _permutation(len(sizes), self.seed, self.name_key, _BLOCKS, epoch, shard)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return order, np.cumsum(sizes[order]), starts


class MixtureSampler:
    """Yields `SampleRef`s forever; see the module docstring for the order and the rank split."""

    def __init__(self, components: Sequence[Component], *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not components:
            raise ValueError("a mixture needs at least one source; found none")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}); found {rank}")
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"mixture source names must be unique; found {names}")
        for c in components:
            if not c.weight > 0:
                raise ValueError(f"mixture source {c.name!r}: weight must be > 0; found {c.weight}")
            if c.rows < world_size:
                raise ValueError(
                    f"mixture source {c.name!r} has {c.rows} rows, fewer than the {world_size} data-parallel ranks "
                    "that must each get a different row"
                )
        self.components, self.seed, self.rank, self.world_size = list(components), seed, rank, world_size
        self._orders = [EpochOrder(c, seed) for c in components]
        weights = np.array([c.weight for c in components], dtype=np.float64)
        self._cdf = np.cumsum(weights / weights.sum())
        self._cdf[-1] = 1.0
        self._draws = 0
        self._consumed = [0] * len(components)
        self._choices: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def _choice(self, t: int) -> int:
        block, offset = divmod(t, CHOICE_BLOCK)
        if self._choices[0] != block:
            u = (_raw(CHOICE_BLOCK, self.seed, _MIX, block) >> np.uint64(11)).astype(np.float64) * 2.0**-53
            self._choices = (block, np.searchsorted(self._cdf, u, side="right"))
        return int(self._choices[1][offset])

    def __iter__(self) -> Iterator[SampleRef]:
        return self

    def __next__(self) -> SampleRef:
        s = self._choice(self._draws)
        element = self._consumed[s] + self.rank
        self._consumed[s] += self.world_size
        self._draws += 1
        return self._orders[s].locate(element)

    @property
    def epochs(self) -> dict[str, float]:
        """Epochs of each source consumed so far, over all ranks."""
        return {c.name: n / c.rows for c, n in zip(self.components, self._consumed, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable; identical on every rank while the ranks draw in step."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "draws": self._draws,
            "sources": {
                c.name: {"consumed": n, "rows": c.rows, "weight": c.weight}
                for c, n in zip(self.components, self._consumed, strict=True)
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; the mixture (names, weights, row counts) and the seed must be the ones saved."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"mixture state version must be {STATE_VERSION}; found {state.get('version')!r}")
        if state["seed"] != self.seed:
            raise ValueError(f"mixture state was saved with seed {state['seed']}; this mixture has seed {self.seed}")
        saved = state["sources"]
        if set(saved) != {c.name for c in self.components}:
            raise ValueError(
                f"mixture state has sources {sorted(saved)}; this mixture has {sorted(c.name for c in self.components)}"
            )
        for c in self.components:
            for key, now in (("rows", c.rows), ("weight", c.weight)):
                if saved[c.name][key] != now:
                    raise ValueError(
                        f"mixture source {c.name!r} had {key} {saved[c.name][key]} when the state was saved; "
                        f"now {now}: the data changed, so the run cannot resume the same order"
                    )
        self._draws = int(state["draws"])
        self._consumed = [int(saved[c.name]["consumed"]) for c in self.components]


class Sample(NamedTuple):
    ref: SampleRef
    record: Record


class Mixture:
    """Records from several sources in the sampler's order: the trainer's data stream for one rank."""

    def __init__(
        self,
        sources: Sequence[tuple[str, Source, float]],
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        threads: int = 16,
    ) -> None:
        self.sources = {name: source for name, source, _ in sources}
        self.shards = {name: source.shards() for name, source, _ in sources}
        with ThreadPoolExecutor(max_workers=threads) as pool:  # block counts are metadata reads: I/O bound
            blocks = {name: list(pool.map(source.blocks, self.shards[name])) for name, source, _ in sources}
        components = [Component(name, weight, blocks[name]) for name, _, weight in sources]
        self.sampler = MixtureSampler(components, seed=seed, rank=rank, world_size=world_size)

    def __iter__(self) -> Iterator[Sample]:
        return self

    def __next__(self) -> Sample:
        ref = next(self.sampler)
        return Sample(ref, self.read(ref))

    def read(self, ref: SampleRef) -> Record:
        return self.sources[ref.source].get(self.shards[ref.source][ref.shard], ref.row)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
