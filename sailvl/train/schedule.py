"""The budget and the learning-rate schedule, as pure functions of what has been trained.

Every budget is counted exactly as trained, over the whole gang: optimizer steps, samples (records that became
training sequences; dropped records do not count), tokens (text and image tokens, padding excluded) or epochs (an
epoch is as many samples as the mixture has rows). Training stops at the first step boundary at which the count
reaches the budget; the last step is never cut short, so a sample or token budget may be passed by less than one
step's worth.

The learning rate is a function of the share of the budget done, not of a step count known in advance: token and
packed-sample budgets do not fix the number of steps, yet the decay still ends at `minLr` as the budget does.
Warmup rises linearly over the first `warmupRatio` of the budget (judged by the share done after the step, so the
first step never trains at zero); the decay (cosine, linear or constant) runs over the rest, judged by the share
done before the step, so the first step after warmup trains at the peak. Nothing but the counters is state:
resuming the counters resumes the schedule exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sailvl.api.trainstage import Budget, Optimizer


@dataclass(frozen=True, kw_only=True)
class Counters:
    """What the gang has trained so far."""

    steps: int = 0
    samples: int = 0
    tokens: int = 0

    def after(self, samples: int, tokens: int) -> Counters:
        return Counters(steps=self.steps + 1, samples=self.samples + samples, tokens=self.tokens + tokens)


@dataclass(frozen=True, kw_only=True)
class BudgetMeter:
    """Measures progress against a budget; `rows` (of the whole mixture) turns epochs into samples."""

    budget: Budget
    rows: int
    global_batch: int
    packing: bool

    @property
    def kind(self) -> str:
        for kind in ("steps", "samples", "tokens", "epochs"):
            if getattr(self.budget, kind) is not None:
                return kind
        raise AssertionError("Budget guarantees exactly one measure")

    @property
    def target(self) -> float:
        """The budget in its unit of count: steps, samples or tokens (epochs become samples)."""
        if self.budget.epochs is not None:
            return self.budget.epochs * self.rows
        value = getattr(self.budget, self.kind)
        assert value is not None
        return float(value)

    def count(self, counters: Counters) -> int:
        if self.kind == "steps":
            return counters.steps
        return counters.tokens if self.kind == "tokens" else counters.samples

    def fraction(self, counters: Counters) -> float:
        return min(self.count(counters) / self.target, 1.0)

    def done(self, counters: Counters) -> bool:
        return self.count(counters) >= self.target

    def total_steps(self, counters: Counters) -> int | None:
        """Steps the budget amounts to: exact for steps, and for samples without packing; otherwise estimated from
        the average so far (None before the first step)."""
        if self.kind == "steps":
            return int(self.target)
        if self.kind != "tokens" and not self.packing:
            return math.ceil(self.target / self.global_batch)
        if counters.steps == 0 or self.count(counters) == 0:
            return None
        if self.done(counters):
            return counters.steps
        per_step = self.count(counters) / counters.steps
        return counters.steps + math.ceil((self.target - self.count(counters)) / per_step)


@dataclass(frozen=True, kw_only=True)
class LrSchedule:
    lr: float
    min_lr: float
    schedule: str
    warmup_ratio: float

    @classmethod
    def from_spec(cls, optimizer: Optimizer) -> LrSchedule:
        return cls(
            lr=optimizer.lr,
            min_lr=optimizer.min_lr,
            schedule=optimizer.schedule,
            warmup_ratio=optimizer.warmup_ratio,
        )

    def __call__(self, before: float, after: float) -> float:
        """The learning rate of the step that takes the share of the budget done from `before` to `after`."""
        warm = min(after / self.warmup_ratio, 1.0) if self.warmup_ratio > 0 else 1.0
        t = min(max(before - self.warmup_ratio, 0.0) / (1.0 - self.warmup_ratio), 1.0)
        if self.schedule == "constant":
            decayed = self.lr
        elif self.schedule == "linear":
            decayed = self.lr - (self.lr - self.min_lr) * t
        elif self.schedule == "cosine":
            decayed = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        else:
            raise ValueError(f"optimizer.schedule must be cosine, linear or constant; found {self.schedule!r}")
        return warm * decayed
