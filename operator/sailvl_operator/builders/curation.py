"""A CurationRun's children over its life: the resolved spec, a vLLM Deployment and Service per model, the
Indexed Job of workers (`sailvl curate --workers N`, each taking every N-th input shard), then the finalize
Job (`sailvl curate --finalize`: the global dedup and the manifest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sailvl.api import CurationRun
from sailvl_operator.builders.batch import SPEC_PATH, build_job, resolved_configmap, worker_container
from sailvl_operator.builders.meta import BuildError, finalize_job_name, workers_job_name
from sailvl_operator.builders.pods import ClaimMounts
from sailvl_operator.builders.serving import build_servers, model_env, resolved_model, servers_of
from sailvl_operator.builders.train import BuildContext

WORKER = "worker"
FINALIZE = "finalize"


@dataclass(frozen=True)
class ResolvedRun:
    """The run as its workers receive it: references resolved, `pvc://` URIs turned into mount paths."""

    spec: dict[str, Any]
    claims: ClaimMounts
    input: str
    """The input's URI as resolved (a CurationRun input's output URI): the lineage."""


def resolve_run(run: CurationRun, ctx: BuildContext) -> ResolvedRun:
    spec = run.spec.to_manifest()
    claims = ClaimMounts()
    source = spec["input"]
    if "curationRun" in source:
        upstream = source.pop("curationRun")
        if upstream not in ctx.data_uris:
            raise BuildError("spec.input.curationRun", f"CurationRun/{upstream} has no output yet")
        source["uri"], source["format"] = ctx.data_uris[upstream], "parquet"
    uri = source["uri"]
    source["uri"] = claims.local(uri)
    spec["output"]["uri"] = claims.local(spec["output"]["uri"], write=True)
    for entry, server in zip(spec.get("models", []), servers_of(run), strict=True):
        entry["model"] = {"uri": resolved_model(server, ctx)}  # what was served, for the record
    return ResolvedRun(spec, claims, uri)


def build_curation_spec_configmap(run: CurationRun, ctx: BuildContext) -> dict[str, Any]:
    return resolved_configmap(run, resolve_run(run, ctx).spec)


def build_curation_job(run: CurationRun, ctx: BuildContext) -> dict[str, Any]:
    """The Indexed Job of `workers.parallelism` workers; each finds its index in JOB_COMPLETION_INDEX."""
    workers = run.spec.workers
    resolved = resolve_run(run, ctx)
    command = ["sailvl", "curate", "--spec", SPEC_PATH, "--workers", str(workers.parallelism)]
    container = worker_container(
        WORKER, command, workers.runtime, ctx, resolved.claims, env=model_env(run), metrics=True
    )
    return build_job(
        run,
        ctx,
        name=workers_job_name(run.name),
        component="workers",
        container=container,
        runtime=workers.runtime,
        claims=resolved.claims,
        field="spec.workers.runtime",
        workers=workers.parallelism,
    )


def build_finalize_job(run: CurationRun, ctx: BuildContext) -> dict[str, Any]:
    """One pod that drops duplicates across all workers' output and writes the final shards and manifest."""
    runtime = run.spec.workers.runtime
    resolved = resolve_run(run, ctx)
    command = ["sailvl", "curate", "--spec", SPEC_PATH, "--finalize"]
    container = worker_container(FINALIZE, command, runtime, ctx, resolved.claims, env=[], metrics=False)
    return build_job(
        run,
        ctx,
        name=finalize_job_name(run.name),
        component=FINALIZE,
        container=container,
        runtime=runtime,
        claims=resolved.claims,
        field="spec.workers.runtime",
    )


def build_curation_children(run: CurationRun, ctx: BuildContext) -> list[dict[str, Any]]:
    """Everything the run creates over its life, in creation order."""
    return [
        build_curation_spec_configmap(run, ctx),
        *build_servers(run, ctx),
        build_curation_job(run, ctx),
        build_finalize_job(run, ctx),
    ]
