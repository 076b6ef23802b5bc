"""`sailvl render`: every child the operator would create for the resources in some files, without a cluster: a
TrainStage's spec ConfigMap and job, a CurationRun's spec ConfigMap, vLLM Deployments and Services, worker and
finalize Jobs, an EvalSuite's spec ConfigMap, vLLM Deployments and Services and eval Job. All are built-in kinds or
kinds with a published schema.

What only a cluster knows is shown as what it will be: a referenced stage's final checkpoint as
`<its checkpoint.uri>/final` (where the trainer exports it), a referenced CurationRun's output as its
`output.uri`. References to resources outside the files get a visible placeholder and a note.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sailvl.api import CurationRun, EvalSuite, Resource, TrainStage
from sailvl.api.validation import ValidationResult, validate_paths
from sailvl_operator.builders import BuildContext, BuildError, build_stage_children
from sailvl_operator.builders.curation import build_curation_children
from sailvl_operator.builders.evaluation import build_eval_children
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


def context_for(resource: Resource, known: Iterable[Resource], settings: Settings) -> tuple[BuildContext, list[str]]:
    """The context the operator would build `resource` with once its references have Succeeded."""
    by_key = {(r.kind, r.namespace, r.name): r for r in known}
    notes: list[str] = []
    model_uris: dict[str, str] = {}
    model_precisions: dict[str, str] = {}
    data_uris: dict[str, str] = {}
    for kind, name in resource.references():
        found = by_key.get((kind, resource.namespace, name))
        if isinstance(found, TrainStage):
            model_uris[name] = final_checkpoint(found)
            model_precisions[name] = found.spec.precision
        elif isinstance(found, CurationRun):
            data_uris[name] = found.spec.output.uri
        else:
            shown = f"<final checkpoint of TrainStage/{name}>" if kind == "TrainStage" else f"<output of {kind}/{name}>"
            (model_uris if kind == "TrainStage" else data_uris)[name] = shown
            notes.append(f"{resource.kind}/{resource.name}: {kind}/{name} is not in the files; shown as {shown}")
    init_uri = None
    if isinstance(resource, TrainStage) and resource.spec.model.init is not None:
        init_uri = resource.spec.model.init.uri or model_uris.get(resource.spec.model.init.stage or "")
    ctx = BuildContext(
        settings=settings,
        init_uri=init_uri,
        data_uris=data_uris,
        model_uris=model_uris,
        model_precisions=model_precisions,
    )
    return ctx, notes


def children(resource: Resource, ctx: BuildContext) -> list[dict[str, Any]]:
    """Every child `resource` has over its life, in creation order."""
    if isinstance(resource, TrainStage):
        return build_stage_children(resource, ctx)
    if isinstance(resource, CurationRun):
        return build_curation_children(resource, ctx)
    assert isinstance(resource, EvalSuite), resource.kind
    return build_eval_children(resource, ctx)


def render_paths(paths: Iterable[str | Path], settings: Settings | None = None) -> Rendered:
    """Validate the files, then build the children of every resource in them (a stage's first attempt; every
    phase of a CurationRun or an EvalSuite)."""
    settings = settings or Settings()
    result = validate_paths(paths)
    rendered = Rendered(validation=result)
    if not result.ok:
        return rendered
    resources = result.resources
    for resource in resources:
        ctx, notes = context_for(resource, resources, settings)
        rendered.notes += notes
        try:
            rendered.objects += children(resource, ctx)
        except BuildError as exc:
            rendered.errors.append(f"{resource.kind}/{resource.name}: {exc}")
    return rendered
