"""The dependency closure of the project with some extras, over the installed distributions (no network)."""

from __future__ import annotations

import importlib.metadata as metadata
import re

from packaging.requirements import Requirement


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(distribution: str, extras: tuple[str, ...] = ()) -> dict[str, str]:
    """Normalized name → installed version of everything `distribution[extras]` pulls in (itself excluded)."""
    found: dict[str, str] = {}
    stack: list[tuple[str, tuple[str, ...]]] = [(distribution, extras)]
    while stack:
        name, wanted = stack.pop()
        key = normalize(name)
        if key in found:
            continue
        dist = metadata.distribution(name)
        found[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (*wanted, "")):
                continue
            stack.append((req.name, tuple(req.extras)))
    found.pop(normalize(distribution))
    return found
