"""Step checkpoints: `<uri>/step-<N>/`, written whole or not at all, `<uri>/latest` naming the newest.

A save goes to `<uri>/.step-<N>.partial/`: every rank writes its part (the engine's model and optimizer state, its
data-stream state, its RNG states), then rank 0 writes the trainer state, the resolved spec and, last, the
manifest `checkpoint.json` listing every file with its size, renames the folder to `step-<N>` and points `latest`
at it (itself written to a temporary name and renamed). A process killed at any moment leaves either the previous
checkpoint or the new one complete, and at worst a `.partial` folder that is never read and is removed later.

Resuming takes the checkpoint `latest` names; if it is missing, incomplete or damaged (a file absent or of the
wrong size), the newest complete one before it, with a warning naming what was wrong. Only the last `keep` step
checkpoints are kept.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sailvl.train.data import StageData
from sailvl.train.distributed import Distributed
from sailvl.train.engines.base import Engine
from sailvl.train.settings import SpecError

log = logging.getLogger(__name__)

LATEST = "latest"
MANIFEST = "checkpoint.json"
TRAINER_STATE = "trainer.json"
STAGE_FILE = "sailvl_stage.json"
_STEP = re.compile(r"^step-(\d+)$")
FORMAT_VERSION = 1


def step_name(step: int) -> str:
    return f"step-{step}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a reader sees the old content or the new, never half."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def engine_format(engine: Engine) -> str:
    """Engines that read each other's checkpoints share a format: ddp and fsdp both write full state dicts."""
    return "deepspeed" if engine.name == "deepspeed" else "torch"


@dataclass(frozen=True)
class Candidate:
    folder: Path
    step: int


class CheckpointStore:
    """The step checkpoints of one stage in `root` (a local folder: a plain path or a mounted volume)."""

    def __init__(self, root: Path, dist: Distributed, *, keep: int) -> None:
        self.root, self.dist, self.keep = root, dist, keep

    # Saving ------------------------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        *,
        engine: Engine,
        data_state: dict[str, Any],
        trainer_state: dict[str, Any],
        stage: dict[str, Any],
    ) -> Path:
        """Write step checkpoint `step` (every rank calls this; `data_state` is this rank's); returns its folder."""
        final = self.root / step_name(step)
        partial = self.root / f".{step_name(step)}.partial"
        if self.dist.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # left by a save that was killed
            (partial / "data").mkdir(parents=True)
            (partial / "rng").mkdir()
        self.dist.barrier()
        engine.save(partial)
        rank = f"rank-{self.dist.rank:05d}"
        write_text_atomic(partial / "data" / f"{rank}.json", json.dumps(data_state))
        torch.save(rng_state(), partial / "rng" / f"{rank}.pt")
        self.dist.barrier()
        if self.dist.is_main:
            state = {**trainer_state, "step": step, "worldSize": self.dist.world_size, "format": engine_format(engine)}
            write_text_atomic(partial / TRAINER_STATE, json.dumps(state, indent=2) + "\n")
            write_text_atomic(partial / STAGE_FILE, json.dumps(stage, indent=2) + "\n")
            write_text_atomic(partial / MANIFEST, json.dumps(_manifest(partial, step, state), indent=2) + "\n")
            if final.exists():  # saved by an attempt that died before `latest` named it
                retired = self.root / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
                final.rename(retired)
                shutil.rmtree(retired)
            partial.rename(final)
            write_text_atomic(self.root / LATEST, final.name + "\n")
            self._prune()
        self.dist.barrier()
        return final

    def _prune(self) -> None:
        complete = sorted(self._steps(), key=lambda c: c.step)
        for old in complete[: max(len(complete) - self.keep, 0)]:
            shutil.rmtree(old.folder, ignore_errors=True)
        for stale in self.root.glob(".step-*"):
            shutil.rmtree(stale, ignore_errors=True)

    # Resuming ----------------------------------------------------------------------------------------------

    def find_resumable(self) -> Path | None:
        """The checkpoint to resume from (decided on rank 0, the same on every rank), or None to start afresh."""
        chosen = self._choose() if self.dist.is_main else None
        folder = self.dist.broadcast(str(chosen) if chosen is not None else None)
        return Path(folder) if folder is not None else None

    def _choose(self) -> Path | None:
        named = self._named_by_latest()
        candidates = sorted(self._steps(), key=lambda c: c.step, reverse=True)
        if named is not None:
            candidates = [c for c in candidates if c.folder.name == named] + [
                c for c in candidates if c.folder.name != named
            ]
            if not any(c.folder.name == named for c in candidates):
                log.warning(
                    "%s names %s, which does not exist; looking for an older checkpoint", self.root / LATEST, named
                )
        for candidate in candidates:
            problem = verify(candidate.folder, candidate.step)
            if problem is None:
                return candidate.folder
            log.warning("not resuming from %s: %s; falling back to an older checkpoint", candidate.folder, problem)
        if candidates:
            log.warning("no complete checkpoint in %s: starting from the beginning", self.root)
        return None

    def _named_by_latest(self) -> str | None:
        path = self.root / LATEST
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8").strip() or None

    def _steps(self) -> list[Candidate]:
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP.match(child.name)
            if match and child.is_dir():
                found.append(Candidate(child, int(match.group(1))))
        return found

    def load(self, folder: Path, *, engine: Engine, data: StageData) -> dict[str, Any]:
        """Restore every rank from `folder`; returns the trainer state (step, counters, last loss ...)."""
        state: dict[str, Any] = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
        if state["worldSize"] != self.dist.world_size:
            raise SpecError(
                f"{folder} was written by {state['worldSize']} processes and this run has {self.dist.world_size}: "
                "each rank resumes its own data stream, so the world size must stay the same "
                f"(or start the stage afresh with a new checkpoint.uri)"
            )
        if state["format"] != engine_format(engine):
            raise SpecError(
                f"{folder} holds a {state['format']} checkpoint; engine {engine.name!r} cannot read it: "
                "resume with the engine that wrote it"
            )
        engine.load(folder)
        rank = f"rank-{self.dist.rank:05d}"
        data.load_state_dict(json.loads((folder / "data" / f"{rank}.json").read_text(encoding="utf-8")))
        set_rng_state(torch.load(folder / "rng" / f"{rank}.pt", weights_only=True))
        self.dist.barrier()
        return state


def _manifest(folder: Path, step: int, state: dict[str, Any]) -> dict[str, Any]:
    files = {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    return {
        "version": FORMAT_VERSION,
        "step": step,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "worldSize": state["worldSize"],
        "format": state["format"],
        "files": files,
    }


def verify(folder: Path, step: int) -> str | None:
    """What makes `folder` unusable as checkpoint `step`, or None if it is complete."""
    path = folder / MANIFEST
    if not path.is_file():
        return f"it has no {MANIFEST} (the save did not finish)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files: dict[str, int] = manifest["files"]
        saved_step = manifest["step"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its {MANIFEST} cannot be read: {exc}"
    if saved_step != step:
        return f"its {MANIFEST} says step {saved_step}"
    for name, size in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes; {size} were written"
    return None


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's random states, as tensors and plain values (loadable with weights_only)."""
    version, python_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(python_state), gauss],
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
