"""Where every record went: kept, dropped by policy (by reason) or rejected by failure (by reason).

The invariant the whole package keeps: in = kept + dropped + rejected, per shard, per worker and per run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["kept", "dropped", "rejected"]


@dataclass
class Counts:
    records_in: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome, reason: str = "") -> None:
        self.records_in += 1
        if outcome == "kept":
            self.kept += 1
        elif outcome == "dropped":
            self.dropped[reason] += 1
        else:
            self.rejected[reason] += 1

    def drop_kept(self, reason: str, n: int = 1) -> None:
        """Turn `n` kept records into dropped ones (the global dedup decides after the workers)."""
        assert n <= self.kept, f"cannot drop {n} of {self.kept} kept records"
        self.kept -= n
        self.dropped[reason] += n

    def merge(self, other: Counts) -> Counts:
        self.records_in += other.records_in
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.rejected.update(other.rejected)
        return self

    @property
    def balanced(self) -> bool:
        return self.records_in == self.kept + sum(self.dropped.values()) + sum(self.rejected.values())

    def to_json(self) -> dict[str, Any]:
        assert self.balanced, f"counts do not add up: {self}"
        return {
            "in": self.records_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "rejected": dict(sorted(self.rejected.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Counts:
        try:
            counts = cls(
                records_in=int(data["in"]),
                kept=int(data["kept"]),
                dropped=Counter({str(k): int(v) for k, v in data["dropped"].items()}),
                rejected=Counter({str(k): int(v) for k, v in data["rejected"].items()}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(
                f"{where}: expected counts {{in, kept, dropped, rejected}}; found {data!r} ({e})"
            ) from None
        if not counts.balanced:
            raise ValueError(f"{where}: counts do not add up (in != kept + dropped + rejected): {data!r}")
        return counts
