"""A resource's spec as its process receives it: references replaced by what they resolved to, `pvc://` claims
mapped to folders, budgets scaled. The same rewriting the operator does before it mounts a spec."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sailvl.api.common import EXPORT_DTYPES
from sailvl.api.manifest import parse_resource
from sailvl.api.meta import Resource

Key = tuple[str, str]


class ResolveError(ValueError):
    pass


@dataclass(frozen=True)
class Outputs:
    """What finished resources produced: a stage's final checkpoint, a curation run's output folder."""

    checkpoints: dict[str, str]  # TrainStage name → final checkpoint folder
    datasets: dict[str, str]  # CurationRun name → output folder
    precisions: dict[str, str] = field(default_factory=dict)  # TrainStage name → precision (its export's dtype)


def local_path(uri: str, pvc_root: Path) -> str:
    """`pvc://claim/path` → `<pvc_root>/claim/path`; `file://x` → `x`; other URIs unchanged."""
    if uri.startswith("pvc://"):
        claim, _, rest = uri[len("pvc://") :].partition("/")
        return str((pvc_root / claim / rest).resolve())
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri


def resolve(resource: Resource, outputs: Outputs, *, pvc_root: Path, scale: float = 1.0) -> Resource:
    """The resource with every reference resolved and every pvc:// URI made a local path."""
    doc = resource.to_manifest()
    doc.pop("status", None)
    spec = doc["spec"]
    if resource.kind == "TrainStage":
        _resolve_model_ref(spec["model"], "init", outputs, resource)
        for entry in spec["data"]["mixture"]:
            _resolve_data_ref(entry["source"], outputs, resource)
        if scale != 1.0:
            spec["budget"] = _scaled(spec["budget"], scale)
    elif resource.kind == "CurationRun":
        _resolve_data_ref(spec["input"], outputs, resource)
        if scale != 1.0:
            spec["input"]["uri"] = scaled_synthetic(spec["input"]["uri"], scale)
        for serving in spec.get("models", []):
            _resolve_model_ref(serving, "model", outputs, resource, serving=serving)
    elif resource.kind == "EvalSuite":
        _resolve_model_ref(spec, "model", outputs, resource, serving=spec.setdefault("serving", {}))
        if "judge" in spec:
            _resolve_model_ref(spec["judge"], "model", outputs, resource, serving=spec["judge"])
        if scale != 1.0:
            spec["data"]["uri"] = scaled_synthetic(spec["data"]["uri"], scale)
    _map_uris(spec, pvc_root)
    return parse_resource(doc)


def _resolve_model_ref(
    holder: dict[str, Any], key: str, outputs: Outputs, resource: Resource, *, serving: dict[str, Any] | None = None
) -> None:
    """Replace a `{stage: name}` model by that stage's final checkpoint; a `serving` that serves it gets the dtype
    the stage exported in, as the operator renders it (`sailvl.api.serving.served_dtype`)."""
    ref = holder.get(key)
    if not ref or "stage" not in ref:
        return
    stage = ref["stage"]
    if stage not in outputs.checkpoints:
        raise ResolveError(f"{resource.kind}/{resource.name}: TrainStage/{stage} has no final checkpoint yet")
    holder[key] = {"uri": outputs.checkpoints[stage]}
    if serving is not None and serving.get("dtype", "auto") == "auto" and stage in outputs.precisions:
        serving["dtype"] = EXPORT_DTYPES[outputs.precisions[stage]]


def _resolve_data_ref(ref: dict[str, Any], outputs: Outputs, resource: Resource) -> None:
    run = ref.pop("curationRun", None)
    if run is None:
        return
    if run not in outputs.datasets:
        raise ResolveError(f"{resource.kind}/{resource.name}: CurationRun/{run} has no output yet")
    ref.update(uri=outputs.datasets[run], format="parquet")


MIN_SCALED_RECORDS = 8


def scaled_synthetic(uri: str, scale: float) -> str:
    """A `synthetic://` input with `n` multiplied by `scale` (at least 8 records); other URIs unchanged.

    What a TrainStage's budget is to training, the number of records is to curation and evaluation: scaling both
    shrinks a recipe to a smoke test without editing it.
    """
    if not uri.startswith("synthetic://"):
        return uri
    from urllib.parse import parse_qsl, urlencode

    base, _, query = uri.partition("?")
    params = dict(parse_qsl(query))
    n = int(params.get("n", "1024"))
    params["n"] = str(max(MIN_SCALED_RECORDS, math.ceil(n * scale)))
    return f"{base}?{urlencode(params)}"


def _scaled(budget: dict[str, Any], scale: float) -> dict[str, Any]:
    if scale <= 0:
        raise ResolveError(f"--scale must be positive; found {scale}")
    (measure, value), *_ = budget.items()
    if measure == "epochs":
        return {measure: value * scale}
    return {measure: max(1, math.ceil(value * scale))}


def _map_uris(node: Any, pvc_root: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("uri",) and isinstance(value, str):
                node[key] = local_path(value, pvc_root)
            elif key != "podTemplate":
                _map_uris(value, pvc_root)
    elif isinstance(node, list):
        for item in node:
            _map_uris(item, pvc_root)
