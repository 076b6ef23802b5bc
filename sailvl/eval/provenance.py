"""What a results file must say about where its numbers come from: the VLMEvalKit commit whose scoring it
matches, the sailvl version, and a digest of the model evaluated.

The digest is the SHA-256 of the checkpoint folder's files (relative names and contents, in name order), so two
results files name the same model only when they evaluated the same bytes. It is computed where the folder can be
read (a local path or a mounted claim); a model streamed from s3:// or hf:// keeps its URI and no digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sailvl import __version__

VLMEVALKIT_REPOSITORY = "https://github.com/open-compass/VLMEvalKit"
VLMEVALKIT_COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"  # 2026-08-18; scoring, prompts and files match it
CHUNK = 1 << 20


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix().encode("utf-8")
        digest.update(len(name).to_bytes(8, "little") + name)
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def provenance(model_uri: str | None) -> dict[str, Any]:
    """The `provenance` block of results.json."""
    local = Path(model_uri) if model_uri and "://" not in model_uri else None
    digest = folder_digest(local) if local is not None and local.is_dir() else None
    return {
        "sailvl": __version__,
        "vlmevalkit": {"repository": VLMEVALKIT_REPOSITORY, "commit": VLMEVALKIT_COMMIT},
        "model": {"uri": model_uri, "digest": digest},
    }
