"""Packing samples into fixed-length rows, and collating samples into model batches.

Packing is best-fit decreasing: samples are placed longest first into the row whose free space fits them most
tightly, which keeps utilisation high (≥ 97% on the SFT length mixes) while never splitting a sample. In a
packed row every sample keeps its own positions (position ids restart at 0) and attends only to itself: the
collator builds a block-diagonal causal mask for CPU and SDPA attention, and the position ids alone tell
flash-attention's varlen kernel where samples start. Packed and unpacked batches give the same per-token loss.

Shape legend: B rows in the batch, L tokens per row, N image tiles in the batch, T tile side.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import torch

from sailvl.data.templates import Sample
from sailvl.data.tokens import IGNORE_INDEX


class PackingError(ValueError):
    pass


def plan_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `capacity` tokens (best-fit decreasing).

    Deterministic: equal lengths keep their input order; rows come out in the order they were opened.
    """
    if capacity < 1:
        raise PackingError(f"capacity must be positive; found {capacity}")
    too_long = [(i, n) for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        i, n = too_long[0]
        raise PackingError(f"sample {i} has {n} tokens, more than a row's {capacity}; truncate it first")
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, row index)
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        need = lengths[i]
        at = bisect.bisect_left(free, (need, -1))
        if at < len(free):
            space, row = free.pop(at)
            bins[row].append(i)
            bisect.insort(free, (space - need, row))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - need, len(bins) - 1))
    return bins


def utilization(lengths: Sequence[int], bins: Sequence[Sequence[int]], capacity: int) -> float:
    """Share of the rows' token slots that hold sample tokens."""
    return sum(lengths) / (len(bins) * capacity) if bins else 0.0


def collate_padded(samples: Sequence[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """One sample per row, right-padded to the longest; a 2-D attention mask marks the real tokens."""
    if not samples:
        raise PackingError("cannot collate an empty batch")
    width = max(len(s) for s in samples)
    ids_BL = np.full((len(samples), width), pad_id, dtype=np.int64)
    labels_BL = np.full((len(samples), width), IGNORE_INDEX, dtype=np.int64)
    mask_BL = np.zeros((len(samples), width), dtype=np.int64)
    for row, sample in enumerate(samples):
        n = len(sample)
        ids_BL[row, :n], labels_BL[row, :n], mask_BL[row, :n] = sample.input_ids, sample.labels, 1
    batch = {
        "input_ids": torch.from_numpy(ids_BL),
        "labels": torch.from_numpy(labels_BL),
        "attention_mask": torch.from_numpy(mask_BL),
    }
    return _with_pixels(batch, samples)


def collate_packed(
    rows: Sequence[Sequence[Sample]], capacity: int, pad_id: int, *, block_mask: bool = True
) -> dict[str, torch.Tensor]:
    """Rows of packed samples, each padded to `capacity`.

    Returns input_ids, labels, position_ids (restarting per sample) and, with `block_mask`, a float additive
    (B, 1, L, L) block-diagonal causal mask (0 where a token may attend, -inf elsewhere). Without it (flash
    attention varlen), position ids alone delimit the samples.
    """
    if not rows:
        raise PackingError("cannot collate an empty batch")
    ids_BL = np.full((len(rows), capacity), pad_id, dtype=np.int64)
    labels_BL = np.full((len(rows), capacity), IGNORE_INDEX, dtype=np.int64)
    positions_BL = np.zeros((len(rows), capacity), dtype=np.int64)
    segments_BL = np.full((len(rows), capacity), -1, dtype=np.int64)  # which sample each slot belongs to
    for row, samples in enumerate(rows):
        at = 0
        for k, sample in enumerate(samples):
            n = len(sample)
            if at + n > capacity:
                raise PackingError(f"row {row} holds {at + n} tokens, more than its capacity {capacity}")
            ids_BL[row, at : at + n] = sample.input_ids
            labels_BL[row, at : at + n] = sample.labels
            # A sample's first token is never a target (nothing of its own precedes it); in a packed row the
            # previous sample's last position would otherwise be trained to predict it.
            labels_BL[row, at] = IGNORE_INDEX
            positions_BL[row, at : at + n] = np.arange(n)
            segments_BL[row, at : at + n] = k
            at += n
        # Padding continues the positions so that rotary embeddings stay defined; it attends to nothing real.
        positions_BL[row, at:] = np.arange(capacity - at)
    batch = {
        "input_ids": torch.from_numpy(ids_BL),
        "labels": torch.from_numpy(labels_BL),
        "position_ids": torch.from_numpy(positions_BL),
    }
    if block_mask:
        batch["attention_mask"] = block_diagonal_mask(torch.from_numpy(segments_BL))
    return _with_pixels(batch, [s for samples in rows for s in samples])


def block_diagonal_mask(segments_BL: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive (B, 1, L, L) mask: token i attends to j iff both are in the same sample and j <= i.

    Padding slots (segment -1) attend only to themselves, so their rows stay finite.
    """
    length = segments_BL.shape[1]
    same_BLL = segments_BL[:, :, None] == segments_BL[:, None, :]
    causal_LL = torch.ones(length, length, dtype=torch.bool).tril()
    allowed_BLL = same_BLL & causal_LL
    padding_BL = segments_BL < 0
    allowed_BLL |= torch.diag_embed(padding_BL)
    mask_B1LL = torch.zeros(allowed_BLL.shape, dtype=dtype).masked_fill_(~allowed_BLL, torch.finfo(dtype).min)
    return mask_B1LL[:, None]


def _with_pixels(batch: dict[str, torch.Tensor], samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    tiles = [s.pixel_values for s in samples if s.pixel_values is not None]
    if tiles:
        batch["pixel_values"] = torch.from_numpy(np.concatenate(tiles))  # (N, 3, T, T), in token order
    return batch
