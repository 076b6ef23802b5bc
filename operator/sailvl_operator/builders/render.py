"""`sailvl render`: every child the operator would create for the resources in some files, without a cluster.

What only a cluster knows is shown as what it will be: a referenced stage's final checkpoint as
`<its checkpoint.uri>/final` (where the trainer exports it), a referenced CurationRun's output as its
`output.uri`. References to resources outside the files get a visible placeholder and a note.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sailvl.api import CurationRun, Resource, TrainStage
from sailvl.api.validation import ValidationResult, validate_paths
from sailvl_operator.builders import BuildContext, BuildError, build_stage_children
from sailvl_operator.settings import Settings


@dataclass
class Rendered:
    """The children, in creation order, and notes for the reader (skipped kinds, placeholders, errors)."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    validation: ValidationResult | None = None


def final_checkpoint(stage: TrainStage) -> str:
    return stage.spec.checkpoint.uri.rstrip("/") + "/final"


def context_for(stage: TrainStage, known: Iterable[Resource], settings: Settings) -> tuple[BuildContext, list[str]]:
    """The context the operator would build `stage` with once its references have Succeeded."""
    by_key = {(r.kind, r.namespace, r.name): r for r in known}
    notes: list[str] = []
    init_uri: str | None = None
    ref = stage.spec.model.init
    if ref is not None and ref.stage is not None:
        found = by_key.get(("TrainStage", stage.namespace, ref.stage))
        if isinstance(found, TrainStage):
            init_uri = final_checkpoint(found)
        else:
            init_uri = f"<final checkpoint of TrainStage/{ref.stage}>"
            notes.append(f"TrainStage/{stage.name}: TrainStage/{ref.stage} is not in the files; shown as {init_uri}")
    data_uris: dict[str, str] = {}
    for entry in stage.spec.data.mixture:
        run = entry.source.curation_run
        if run is None:
            continue
        found = by_key.get(("CurationRun", stage.namespace, run))
        if isinstance(found, CurationRun):
            data_uris[run] = found.spec.output.uri
        else:
            data_uris[run] = f"<output of CurationRun/{run}>"
            notes.append(f"TrainStage/{stage.name}: CurationRun/{run} is not in the files; shown as {data_uris[run]}")
    return BuildContext(settings=settings, init_uri=init_uri, data_uris=data_uris), notes


def render_paths(paths: Iterable[str | Path], settings: Settings | None = None) -> Rendered:
    """Validate the files, then build the first attempt's children of every TrainStage in them."""
    settings = settings or Settings()
    result = validate_paths(paths)
    rendered = Rendered(validation=result)
    if not result.ok:
        return rendered
    resources = result.resources
    for resource in resources:
        if not isinstance(resource, TrainStage):
            rendered.notes.append(f"{resource.kind}/{resource.name}: skipped (its children are not rendered yet)")
            continue
        ctx, notes = context_for(resource, resources, settings)
        rendered.notes += notes
        try:
            rendered.objects += build_stage_children(resource, ctx)
        except BuildError as exc:
            rendered.errors.append(f"{resource.kind}/{resource.name}: {exc}")
    return rendered
