"""Where a local run keeps each resource's state: `<workdir>/<kind>/<name>/` holds `state.json` (the status, in
the operator's own status model, plus the endpoints and processes the runner started) and each process's log."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sailvl.api.curationrun import CurationRunStatus
from sailvl.api.evalsuite import EvalSuiteStatus
from sailvl.api.meta import ResourceStatus
from sailvl.api.trainstage import TrainStageStatus

STATUS_MODELS: dict[str, type[ResourceStatus]] = {
    "TrainStage": TrainStageStatus,
    "CurationRun": CurationRunStatus,
    "EvalSuite": EvalSuiteStatus,
}


class LocalRecord(BaseModel):
    """What the runner knows beyond the status: ports, outputs, the spec it ran, per-process exit codes."""

    spec_digest: str | None = None
    endpoints: dict[str, str] = Field(default_factory=dict)  # e.g. {"metrics": "http://127.0.0.1:40123/metrics"}
    outputs: dict[str, str] = Field(default_factory=dict)  # e.g. {"final": "/.../final"} or {"dataset": "/..."}
    exit_codes: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = None  # wall time of the last run


class State:
    """One resource's folder under the work directory."""

    def __init__(self, workdir: Path, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.folder = workdir / kind.lower() / name

    @property
    def path(self) -> Path:
        return self.folder / "state.json"

    def log(self, process: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{process}.log"

    def load(self) -> tuple[ResourceStatus, LocalRecord]:
        model = STATUS_MODELS[self.kind]
        if not self.path.exists():
            return model(), LocalRecord()
        raw = json.loads(self.path.read_text())
        return model.model_validate(raw["status"], strict=False), LocalRecord.model_validate(raw["local"])

    def save(self, status: ResourceStatus, local: LocalRecord) -> None:
        """Atomically: a reader never sees half a file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "status": status.to_manifest(),
            "local": local.model_dump(mode="json"),
        }
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.folder)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, self.path)


def all_states(workdir: Path) -> list[State]:
    found = []
    for kind in STATUS_MODELS:
        folder = workdir / kind.lower()
        if folder.is_dir():
            found += [State(workdir, kind, p.name) for p in sorted(folder.iterdir()) if (p / "state.json").exists()]
    return found
