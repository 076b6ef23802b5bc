"""The mixture sampler: deterministic, exact resume, disjoint ranks, complete reshuffled epochs, at any scale."""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest

from sailvl.data.mixture import Component, Mixture, MixtureSampler, SampleRef
from sailvl.data.sources import open_source

# Uneven shards and blocks (parquet row groups), an empty shard and an empty block included.
SMALL = Component("small", 1.0, [(5, 5), (3,), (0,), (7, 0, 2)])
BIG = Component("big", 3.0, [(40, 60)] * 10)


def take(sampler: MixtureSampler, n: int) -> list[SampleRef]:
    return list(islice(sampler, n))


def test_same_seed_same_sequence_other_seed_other_sequence() -> None:
    first = take(MixtureSampler([SMALL, BIG], seed=3), 500)
    assert first == take(MixtureSampler([SMALL, BIG], seed=3), 500)
    assert first != take(MixtureSampler([SMALL, BIG], seed=4), 500)


@pytest.mark.parametrize("cut", [0, 1, 337, 4096, 4100])
def test_resume_from_state_equals_uninterrupted(cut: int) -> None:
    whole = take(MixtureSampler([SMALL, BIG], seed=9, rank=1, world_size=2), 5000)
    before = MixtureSampler([SMALL, BIG], seed=9, rank=1, world_size=2)
    assert take(before, cut) == whole[:cut]
    state = json.loads(json.dumps(before.state_dict()))  # it must survive a checkpoint file
    after = MixtureSampler([SMALL, BIG], seed=9, rank=1, world_size=2)
    after.load_state_dict(state)
    assert take(after, 5000 - cut) == whole[cut:]


def test_every_epoch_visits_every_row_once_in_a_new_order() -> None:
    sampler = MixtureSampler([SMALL], seed=1)
    rows = SMALL.rows
    epochs = [take(sampler, rows) for _ in range(3)]
    for e, refs in enumerate(epochs):
        assert {r.epoch for r in refs} == {e}
        assert sorted((r.shard, r.row) for r in refs) == sorted(
            (s, row) for s, blocks in enumerate(SMALL.blocks) for row in range(sum(blocks))
        )
    assert [(r.shard, r.row) for r in epochs[0]] != [(r.shard, r.row) for r in epochs[1]]
    assert sampler.epochs == {"small": 3.0}


def test_ranks_never_get_the_same_row() -> None:
    world = 4
    ranks = [MixtureSampler([SMALL, BIG], seed=5, rank=r, world_size=world) for r in range(world)]
    draws = [take(s, 3000) for s in ranks]
    seen: Counter[SampleRef] = Counter(ref for refs in draws for ref in refs)
    assert max(seen.values()) == 1  # (source, shard, row, epoch) unique across ranks
    # Within one epoch the ranks together cover each row of a source once: here SMALL's first epoch.
    first_epoch = [(r.shard, r.row) for refs in draws for r in refs if r.source == "small" and r.epoch == 0]
    assert len(first_epoch) == SMALL.rows and len(set(first_epoch)) == SMALL.rows
    # All ranks hold the same state while drawing in step.
    assert len({json.dumps(s.state_dict(), sort_keys=True) for s in ranks}) == 1


def test_resume_on_a_different_number_of_ranks_stays_disjoint() -> None:
    old = [MixtureSampler([BIG], seed=2, rank=r, world_size=2) for r in range(2)]
    consumed = [ref for s in old for ref in take(s, 150)]
    state = old[0].state_dict()
    new = [MixtureSampler([BIG], seed=2, rank=r, world_size=3) for r in range(3)]
    for s in new:
        s.load_state_dict(state)
    resumed = [ref for s in new for ref in take(s, 200)]
    assert len(set(consumed + resumed)) == 900  # 300 + 600, all rows of epoch 0 (BIG has 1000)
    assert {r.epoch for r in consumed + resumed} == {0}


def test_weights_set_the_proportions() -> None:
    counts = Counter(r.source for r in take(MixtureSampler([SMALL, BIG], seed=0), 20000))
    assert abs(counts["big"] / 20000 - 0.75) < 0.015


def test_scales_to_many_shards_without_materialising_rows() -> None:
    huge = Component("huge", 1.0, [(10_000,)] * 1_000_000)  # 10^10 rows
    start = time.perf_counter()
    refs = take(MixtureSampler([huge, SMALL], seed=0, rank=3, world_size=8), 2000)
    assert time.perf_counter() - start < 5.0
    assert len({r.shard for r in refs if r.source == "huge"}) <= 2  # shard-major order: few shards open at once
    assert len(set(refs)) == 2000


def test_state_mismatches_are_refused() -> None:
    sampler = MixtureSampler([SMALL, BIG], seed=1)
    take(sampler, 10)
    state = sampler.state_dict()
    cases = [
        (MixtureSampler([SMALL, BIG], seed=2), "saved with seed 1; this mixture has seed 2"),
        (MixtureSampler([SMALL], seed=1), "state has sources ['big', 'small']; this mixture has ['small']"),
        (MixtureSampler([SMALL, Component("big", 3.0, [(40, 61)] * 10)], seed=1), "'big' had rows 1000 when"),
        (MixtureSampler([SMALL, Component("big", 2.0, BIG.blocks)], seed=1), "'big' had weight 3.0 when"),
    ]
    for other, message in cases:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            other.load_state_dict(state)
    with pytest.raises(ValueError, match="version must be 1"):
        sampler.load_state_dict({**state, "version": 0})


@pytest.mark.parametrize(
    ("components", "kwargs", "message"),
    [
        ([], {}, "at least one source"),
        ([SMALL, Component("small", 1.0, [(3,)])], {}, "names must be unique"),
        ([Component("z", 0.0, [(3,)])], {}, "weight must be > 0; found 0.0"),
        ([Component("tiny", 1.0, [(2,)])], {"rank": 0, "world_size": 4}, "has 2 rows, fewer than the 4"),
        ([SMALL], {"rank": 2, "world_size": 2}, r"rank must be in \[0, world_size=2\); found 2"),
    ],
)
def test_bad_mixtures(components: list[Component], kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MixtureSampler(components, seed=0, **kwargs)


def test_mixture_reads_records_and_resumes(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"t{i}", "text": f"line {i}"}) for i in range(30)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:13]))
    (tmp_path / "b.jsonl").write_text("\n".join(lines[13:]))

    def mixture(rank: int) -> Mixture:
        sources = [
            ("shapes", open_source("synthetic://shapes?n=40&seed=0&split=sft-knowledge&size=96&shard=16"), 1.0),
            ("lines", open_source(str(tmp_path), format="jsonl"), 2.0),
        ]
        return Mixture(sources, seed=7, rank=rank, world_size=2)

    whole = [s.record.id for s in islice(mixture(0), 40)]
    part = mixture(0)
    assert [s.record.id for s in islice(part, 15)] == whole[:15]
    resumed = mixture(0)
    resumed.load_state_dict(part.state_dict())
    assert [s.record.id for s in islice(resumed, 25)] == whole[15:]
    # The other rank reads other records (within an epoch: 40 draws run past the 30 lines' first epoch).
    mine = {(s.record.id, s.ref.epoch) for s in islice(mixture(0), 40)}
    theirs = {(s.record.id, s.ref.epoch) for s in islice(mixture(1), 40)}
    assert not mine & theirs and len(mine) == len(theirs) == 40
