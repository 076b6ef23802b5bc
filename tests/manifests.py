"""Small valid manifests the tests mutate, one per kind."""

from __future__ import annotations

import copy
from typing import Any

TRAIN: dict[str, Any] = {
    "apiVersion": "sailvl.io/v1alpha1",
    "kind": "TrainStage",
    "metadata": {"name": "align"},
    "spec": {
        "model": {"preset": "tiny", "tileSize": 224},
        "trainable": ["projector"],
        "data": {
            "mixture": [{"name": "shapes", "source": {"uri": "synthetic://shapes?n=64&seed=0"}}],
            "template": "caption",
        },
        "budget": {"steps": 20},
        "optimizer": {"lr": 1e-3},
        "batch": {"globalSize": 8, "microSize": 2},
        "checkpoint": {"uri": "/tmp/sailvl/align"},
    },
}

CURATION: dict[str, Any] = {
    "apiVersion": "sailvl.io/v1alpha1",
    "kind": "CurationRun",
    "metadata": {"name": "recaption"},
    "spec": {
        "input": {"uri": "synthetic://shapes?n=64&seed=1"},
        "output": {"uri": "pvc://data/curated"},
        "models": [{"name": "captioner", "model": {"stage": "captioner"}, "gpusPerReplica": 1}],
        "steps": [
            {"recaption": {"model": "captioner", "useAltText": True}},
            {"filter": {"minChars": 10}},
            {"dedup": {"image": "phash", "text": "minhash"}},
        ],
    },
}

EVAL: dict[str, Any] = {
    "apiVersion": "sailvl.io/v1alpha1",
    "kind": "EvalSuite",
    "metadata": {"name": "align-eval"},
    "spec": {
        "model": {"stage": "align"},
        "benchmarks": ["shapes_vqa", "shapes_count"],
        "data": {"uri": "synthetic://shapes?n=32&seed=2&split=test"},
    },
}

BASES = {"TrainStage": TRAIN, "CurationRun": CURATION, "EvalSuite": EVAL}
DELETE = object()


def mutated(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with each dotted path (`spec.model.init`, `spec.steps[1]`) set or deleted."""
    doc = copy.deepcopy(base)
    for path, value in changes.items():
        parts: list[str | int] = []
        for token in path.replace("]", "").split("."):
            name, *indices = token.split("[")
            if name:
                parts.append(name)
            parts += [int(i) for i in indices]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[part]
        if value is DELETE:
            del parent[parts[-1]]
        elif isinstance(parent, list) and parts[-1] == len(parent):
            parent.append(value)
        else:
            parent[parts[-1]] = value
    return doc
