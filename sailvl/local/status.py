"""`sailvl status`: the resources of a local run as `kubectl get` shows them (NAME KIND PHASE PROGRESS ...)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sailvl.api.curationrun import CurationRunStatus
from sailvl.api.evalsuite import EvalSuiteStatus
from sailvl.api.meta import ResourceStatus
from sailvl.api.trainstage import TrainStageStatus
from sailvl.local.state import all_states


def key_figure(status: ResourceStatus) -> str:
    if isinstance(status, TrainStageStatus) and status.progress and status.progress.loss is not None:
        return f"loss={status.progress.loss:.4f}"
    if isinstance(status, CurationRunStatus) and status.progress:
        return f"samples={status.progress.samples_out}"
    if isinstance(status, EvalSuiteStatus) and status.average is not None:
        return f"average={status.average:.1f}"
    return ""


def progress_of(status: ResourceStatus) -> str:
    percent = getattr(getattr(status, "progress", None), "percent", None)
    return f"{percent:.0f}%" if percent is not None else ""


def age(start: str | None, now: datetime | None = None) -> str:
    if not start:
        return ""
    seconds = int(((now or datetime.now(UTC)) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def status_table(workdir: Path) -> str:
    rows = [("NAME", "KIND", "PHASE", "PROGRESS", "KEY FIGURE", "AGE")]
    for state in all_states(workdir):
        status, _ = state.load()
        rows.append(
            (
                state.name,
                state.kind,
                status.phase or "Pending",
                progress_of(status),
                key_figure(status),
                age(status.start_time),
            )
        )
    if len(rows) == 1:
        return f"no resources under {workdir} (run `sailvl run` first)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
