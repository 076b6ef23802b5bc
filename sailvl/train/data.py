"""The stage's data stream on one rank: mixture -> rendered samples -> the micro-batches of one optimizer step.

Without packing a micro-batch is `microSize` samples padded to the longest. With packing it is `microSize` rows of
at most `maxLength` tokens: each step draws samples until they hold the step's rows' worth of tokens, packs them
best-fit decreasing, trains on the fullest rows and carries the samples of the rows left over into the next step.

Resuming is exact: the state is the mixture sampler's counters plus the references of the carried samples (which
are read and rendered again), so a restarted rank sees the very samples it would have seen. Ranks draw independent
amounts (a dropped record or a packing carry-over is per rank), so each rank keeps its own state.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from sailvl.api.trainstage import TrainStageSpec
from sailvl.data.mixture import Mixture, SampleRef
from sailvl.data.packing import collate_packed, collate_padded, plan_bins
from sailvl.data.sources import open_source
from sailvl.data.templates import Renderer, Sample, SampleDropped
from sailvl.data.tokens import IGNORE_INDEX
from sailvl.model.checkpoint import BuiltModel

STATE_VERSION = 1
# Records dropped in a row before the stream is judged unusable (a template that fits none of the data).
MAX_CONSECUTIVE_DROPS = 10_000


class DataError(ValueError):
    """A data stream that cannot feed the stage."""


@dataclass
class StepBatch:
    """The micro-batches of one optimizer step on this rank, and what they hold."""

    micro_batches: list[dict[str, torch.Tensor]]
    samples: int
    tokens: int
    """Text and image tokens, padding excluded."""
    targets: int
    """Tokens the loss is computed on (labels that are not IGNORE_INDEX, after the shift)."""
    lengths: list[int] = field(default_factory=list)
    """Length of every sample (attention cost grows with its square)."""
    tiles: int = 0


class StageData:
    """Micro-batches for one rank, drawn from the stage's mixture in the deterministic, resumable order."""

    def __init__(
        self,
        spec: TrainStageSpec,
        built: BuiltModel,
        *,
        rank: int,
        world_size: int,
        pvc_root: str | None = None,
        block_mask: bool = True,
    ) -> None:
        sources = [(e.name, open_source(e.source, pvc_root=pvc_root), e.weight) for e in spec.data.mixture]
        self.mixture = Mixture(sources, seed=spec.seed, rank=rank, world_size=world_size)
        self.renderer = Renderer(
            tokenizer=built.tokenizer,
            template=spec.data.template,
            tiler=built.tiler,
            tokens_per_tile=built.tokens_per_tile,
            max_length=spec.data.max_length,
        )
        pad_id = built.tokenizer.pad_token_id
        if not isinstance(pad_id, int):
            raise DataError("the tokenizer has no pad token; batches cannot be padded")
        self.pad_id = pad_id
        self.micro_size = spec.batch.micro_size
        self.packing = spec.data.packing
        self.capacity = spec.data.max_length
        self.block_mask = block_mask
        self.pending: list[tuple[SampleRef, Sample]] = []
        self.dropped: Counter[str] = Counter()

    @property
    def rows(self) -> int:
        """Rows of the whole mixture: one epoch."""
        return sum(c.rows for c in self.mixture.sampler.components)

    def next_step(self, micro_batches: int) -> StepBatch:
        groups = self._packed_groups(micro_batches) if self.packing else self._padded_groups(micro_batches)
        batches: list[dict[str, torch.Tensor]] = []
        for group in groups:
            if self.packing:
                width = max(sum(len(s) for s in row) for row in group)
                batches.append(collate_packed(group, width, self.pad_id, block_mask=self.block_mask))
            else:
                batches.append(collate_padded([row[0] for row in group], self.pad_id))
        samples = [s for group in groups for row in group for s in row]
        return StepBatch(
            micro_batches=batches,
            samples=len(samples),
            tokens=sum(len(s) for s in samples),
            targets=sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches),
            lengths=[len(s) for s in samples],
            tiles=sum(sum(s.tiles_per_image) for s in samples),
        )

    def _padded_groups(self, micro_batches: int) -> list[list[list[Sample]]]:
        return [[[self._draw()[1]] for _ in range(self.micro_size)] for _ in range(micro_batches)]

    def _packed_groups(self, micro_batches: int) -> list[list[list[Sample]]]:
        rows_needed = self.micro_size * micro_batches
        pool, self.pending = self.pending, []
        while sum(len(s) for _, s in pool) < rows_needed * self.capacity:
            pool.append(self._draw())
        bins = plan_bins([len(s) for _, s in pool], self.capacity)
        # Rows come out in the order they were opened, the fullest first; the last ones wait for the next step.
        self.pending = [pool[i] for row in bins[rows_needed:] for i in sorted(row)]
        rows = [[pool[i][1] for i in row] for row in bins[:rows_needed]]
        return [rows[k : k + self.micro_size] for k in range(0, rows_needed, self.micro_size)]

    def _draw(self) -> tuple[SampleRef, Sample]:
        for _ in range(MAX_CONSECUTIVE_DROPS):
            item = next(self.mixture)
            try:
                return item.ref, self.renderer(item.record)
            except SampleDropped as dropped:
                self.dropped[dropped.reason] += 1
        raise DataError(
            f"{MAX_CONSECUTIVE_DROPS} records in a row were dropped by the {self.renderer.template!r} template "
            f"(reasons so far: {dict(self.dropped)}): the data does not fit spec.data"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "mixture": self.mixture.state_dict(),
            "pending": [list(ref) for ref, _ in self.pending],
            "dropped": dict(self.dropped),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise DataError(f"data state version must be {STATE_VERSION}; found {state.get('version')!r}")
        self.mixture.load_state_dict(state["mixture"])
        self.pending = [self._reread(SampleRef(*ref)) for ref in state["pending"]]
        self.dropped = Counter(state["dropped"])

    def _reread(self, ref: SampleRef) -> tuple[SampleRef, Sample]:
        return ref, self.renderer(self.mixture.read(ref))


class Prefetcher:
    """Prepares the next step's micro-batches on a thread while the current step trains.

    Reading, decoding, tiling and tokenizing mostly release the GIL, so they overlap the model's compute. The
    order stays exactly the stream's (one producer, one step at a time), and each batch comes with the data state
    as of its end: the state a checkpoint written after training that batch must hold (the stream itself is
    already a step further).
    """

    def __init__(self, data: StageData, micro_batches: int) -> None:
        self.data, self.micro_batches = data, micro_batches
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sailvl-data")
        self._next: Future[tuple[StepBatch, dict[str, Any]]] | None = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def next_step(self) -> tuple[StepBatch, dict[str, Any]]:
        current = self._next or self._pool.submit(self._produce)
        result = current.result()
        self._next = self._pool.submit(self._produce)
        return result

    def _produce(self) -> tuple[StepBatch, dict[str, Any]]:
        batch = self.data.next_step(self.micro_batches)
        return batch, self.data.state_dict()
