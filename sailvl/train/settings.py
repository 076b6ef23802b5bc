"""What the trainer is told: the TrainStage file and the environment the operator or the local runner sets.

Environment (all optional):
- `SAILVL_INIT_URI`: the checkpoint a `model.init.stage` reference resolved to. The trainer never looks stages up
  itself; the operator writes the resolved URI into the spec it mounts, and the local runner sets this variable.
- `SAILVL_PVC_ROOT`: folder holding one subfolder per claim, for `pvc://` URIs (default `/mnt/pvc`, where the
  operator mounts claims); `--pvc-root` overrides it.
- `SAILVL_METRICS_PORT`: rank 0's Prometheus port (default 9400; 0 picks a free port; `off` disables it).
- `SAILVL_TERMINATION_LOG`: where the JSON result goes (default `/dev/termination-log` when it is writable).
- `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`: set by torchrun (which reads the `PET_*`
  variables a PyTorchJob or TrainJob injects); without them the trainer runs as a single process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from sailvl.api.manifest import ManifestError, load_yaml, parse_resource
from sailvl.api.trainstage import TrainStage

DEFAULT_METRICS_PORT = 9400
POD_TERMINATION_LOG = Path("/dev/termination-log")

EXIT_OK = 0
EXIT_INVALID = 2  # invalid spec or configuration: never retried
EXIT_LOSS_NOT_FINITE = 3  # never retried: the operator marks the stage LossNotFinite


class SpecError(ValueError):
    """A spec file or a setting that cannot run: names the file or variable, what was expected and found."""


class LossNotFinite(RuntimeError):
    """The training loss became NaN or infinite; the run stops at once (exit code 3)."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"the loss of step {step} is {loss}: not finite; stopping (exit code {EXIT_LOSS_NOT_FINITE})")
        self.step, self.loss = step, loss


def load_stage(path: str | Path) -> TrainStage:
    """The one TrainStage in `path`: a manifest (YAML) or the resolved JSON the operator mounts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"--spec {path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        docs = [json.loads(text)] if path.suffix == ".json" else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"--spec {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    stages = [d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainStage"]
    if len(stages) != 1:
        kinds = [d.get("kind") if isinstance(d, dict) else type(d).__name__ for d in docs]
        raise SpecError(f"--spec {path}: expected exactly one TrainStage document; found kinds {kinds}")
    try:
        stage = parse_resource(stages[0])
    except ManifestError as exc:
        raise SpecError(f"--spec {path}: {exc}") from None
    assert isinstance(stage, TrainStage)
    return stage


@dataclass(frozen=True, kw_only=True)
class TrainerSettings:
    """Everything the trainer takes from outside the spec."""

    init_uri: str | None = None
    pvc_root: str | None = None
    metrics_port: int | None = DEFAULT_METRICS_PORT
    termination_log: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, pvc_root: str | None = None) -> TrainerSettings:
        return cls(
            init_uri=env.get("SAILVL_INIT_URI") or None,
            pvc_root=pvc_root or env.get("SAILVL_PVC_ROOT") or None,
            metrics_port=_metrics_port(env.get("SAILVL_METRICS_PORT")),
            termination_log=_termination_log(env.get("SAILVL_TERMINATION_LOG")),
        )


def _metrics_port(value: str | None) -> int | None:
    if value is None or value == "":
        return DEFAULT_METRICS_PORT
    if value.lower() == "off":
        return None
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise SpecError(f"SAILVL_METRICS_PORT must be a port number 0-65535 or 'off'; found {value!r}")
    return int(value)


def _termination_log(value: str | None) -> Path | None:
    if value:
        return Path(value)
    # Outside a pod there is no termination log; writing a file named /dev/termination-log would be a surprise.
    if POD_TERMINATION_LOG.exists() and os.access(POD_TERMINATION_LOG, os.W_OK):
        return POD_TERMINATION_LOG
    return None
