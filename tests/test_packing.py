"""Packing: every sample placed once, rows full, and a packed batch trains exactly like the samples alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sailvl.data.packing import (
    PackingError,
    block_diagonal_mask,
    collate_packed,
    collate_padded,
    plan_bins,
    utilization,
)
from sailvl.data.synthetic.generator import generate
from sailvl.data.synthetic.spec import parse_synthetic_uri
from sailvl.data.templates import Renderer, Sample
from sailvl.data.tiling import tokens_per_tile
from sailvl.data.tokens import IGNORE_INDEX


def test_plan_places_every_sample_once_within_capacity() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(1, 300, size=500)]
    bins = plan_bins(lengths, 512)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert plan_bins(lengths, 512) == bins  # deterministic


def test_best_fit_fills_rows_on_a_log_normal_mix() -> None:
    rng = np.random.default_rng(1)
    lengths = [int(min(4096, max(16, x))) for x in rng.lognormal(mean=6.0, sigma=0.8, size=5000)]
    bins = plan_bins(lengths, 4096)
    assert utilization(lengths, bins, 4096) >= 0.97


def test_a_sample_longer_than_a_row_is_an_error() -> None:
    with pytest.raises(PackingError, match="sample 1 has 600 tokens, more than a row's 512"):
        plan_bins([10, 600], 512)


def test_block_diagonal_mask() -> None:
    mask = block_diagonal_mask(torch.tensor([[0, 0, 1, 1, 1, -1]]))[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]


def _sample(ids: list[int], supervised_from: int) -> Sample:
    labels = [IGNORE_INDEX] * supervised_from + ids[supervised_from:]
    return Sample(id="s", input_ids=np.array(ids), labels=np.array(labels), pixel_values=None)


def test_packed_rows_restart_positions_and_ignore_sample_starts() -> None:
    batch = collate_packed([[_sample([5, 6, 7], 0), _sample([8, 9], 0)]], capacity=6, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9, IGNORE_INDEX]]
    assert batch["attention_mask"].shape == (1, 1, 6, 6)


def test_padded_batch() -> None:
    batch = collate_padded([_sample([5, 6, 7], 1), _sample([8], 0)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def _token_losses(logits_LV: torch.Tensor, labels_L: torch.Tensor) -> torch.Tensor:
    """Loss of each target token, in order (the model's own shift: logits at t predict the label at t+1)."""
    losses = torch.nn.functional.cross_entropy(logits_LV[:-1].float(), labels_L[1:], reduction="none")
    return losses[labels_L[1:] != IGNORE_INDEX]


def test_packed_and_unpacked_give_the_same_per_token_loss() -> None:
    from sailvl.model.build import build_preset

    built = build_preset("tiny", seed=0)
    model = built.model.eval()
    render = Renderer(
        tokenizer=built.tokenizer,
        template="chat",
        tiler=built.tiler,
        tokens_per_tile=tokens_per_tile(built.tiler.tile_size),
        max_length=1024,
    )
    spec = parse_synthetic_uri("synthetic://shapes?n=6&seed=3&split=sft-instruction")
    samples = [render(generate(spec, i)) for i in range(6)]
    alone = []
    with torch.no_grad():
        for s in samples:
            batch = collate_padded([s], pad_id=0)
            logits = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch.get("pixel_values"),
            ).logits[0]
            alone.append(_token_losses(logits, batch["labels"][0]))
        capacity = max(len(s) for s in samples) * 3
        rows = plan_bins([len(s) for s in samples], capacity)
        assert any(len(r) > 1 for r in rows), "the test must pack several samples into one row"
        packed = collate_packed([[samples[i] for i in r] for r in rows], capacity, pad_id=0)
        logits_BLV = model(
            input_ids=packed["input_ids"],
            attention_mask=packed["attention_mask"],
            position_ids=packed["position_ids"],
            pixel_values=packed.get("pixel_values"),
        ).logits
    for row_index, row in enumerate(rows):
        row_losses = _token_losses(logits_BLV[row_index], packed["labels"][row_index])
        expected = torch.cat([alone[i] for i in row])
        assert row_losses.shape == expected.shape
        torch.testing.assert_close(row_losses, expected, atol=1e-5, rtol=0)
