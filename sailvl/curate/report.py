"""Termination messages (DESIGN §4): one JSON object of at most 4 KiB in the file `SAILVL_TERMINATION_LOG` names,
where Kubernetes picks it up for the operator."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TERMINATION_LOG_ENV = "SAILVL_TERMINATION_LOG"
MAX_MESSAGE_BYTES = 4096


def _fold(reasons: dict[str, int], keep: int) -> dict[str, int]:
    """The `keep` largest reasons, the rest summed under `other`."""
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    folded = dict(ranked[:keep])
    rest = sum(n for _, n in ranked[keep:])
    if rest:
        folded["other"] = folded.get("other", 0) + rest
    return folded


def encode_message(message: Mapping[str, Any]) -> str:
    """`message` as compact JSON, reasons folded until it fits in 4 KiB (the counts stay exact in total)."""
    out = dict(message)
    text = json.dumps(out, separators=(",", ":"))
    keep = 32
    while len(text.encode()) > MAX_MESSAGE_BYTES and keep > 0:
        for key in ("dropped", "rejected"):
            if isinstance(out.get(key), dict):
                out[key] = _fold(out[key], keep)
        keep //= 2
        text = json.dumps(out, separators=(",", ":"))
    return text


def write_termination_message(message: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> str:
    """Write the message where SAILVL_TERMINATION_LOG points (if set) and return it."""
    text = encode_message(message)
    path = env.get(TERMINATION_LOG_ENV)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text
