"""Numbers are a contract: the loss curve of a 20-step tiny run at a fixed seed, pinned.

A change that moves these numbers changes what the trainer computes (data order, rendering, loss, schedule,
optimizer) and must say so by updating them. The tolerance only absorbs float summation order (thread counts,
CPU instruction sets); a real change moves the curve by far more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainkit import losses, run_here, tiny_stage

pytestmark = pytest.mark.slow

GOLDEN_LOSSES = [
    7.020969, 6.712151, 6.530861, 6.253354, 5.977113, 5.623684, 5.184995, 4.906676, 4.688839, 4.461220,
    4.129214, 4.189891, 3.801898, 3.603245, 3.533002, 3.609036, 3.633543, 3.326386, 3.325798, 3.401281,
]  # fmt: skip


def test_twenty_tiny_steps_give_the_pinned_losses(tmp_path: Path) -> None:
    result = run_here(
        tiny_stage(tmp_path, **{"budget.steps": 20, "checkpoint.intervalSteps": 1000, "batch.microSize": 4})
    )
    assert (result.steps, result.samples, result.tokens) == (20, 80, 5917)
    assert losses(tmp_path) == pytest.approx(GOLDEN_LOSSES, rel=1e-4)
