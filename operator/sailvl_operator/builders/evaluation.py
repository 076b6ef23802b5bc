"""An EvalSuite's children: the resolved spec, the model under test served by vLLM as `model` (and a judge under
its own name), and one Job running `sailvl eval`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sailvl.api import EvalSuite
from sailvl_operator.builders.batch import SPEC_PATH, build_job, resolved_configmap, worker_container
from sailvl_operator.builders.meta import eval_job_name
from sailvl_operator.builders.pods import ClaimMounts
from sailvl_operator.builders.serving import build_servers, model_env, resolved_model, servers_of
from sailvl_operator.builders.train import BuildContext

EVAL = "eval"


@dataclass(frozen=True)
class ResolvedSuite:
    spec: dict[str, Any]
    claims: ClaimMounts
    model: str
    """The URI of the model under test as resolved (a stage's final checkpoint): the lineage."""


def resolve_suite(suite: EvalSuite, ctx: BuildContext) -> ResolvedSuite:
    spec = suite.spec.to_manifest()
    claims = ClaimMounts()
    servers = servers_of(suite)
    model = resolved_model(servers[0], ctx)
    spec["model"] = {"uri": model}
    if "judge" in spec:
        spec["judge"]["model"] = {"uri": resolved_model(servers[1], ctx)}
    spec["data"]["uri"] = claims.local(spec["data"]["uri"])
    if "output" in spec:
        spec["output"]["uri"] = claims.local(spec["output"]["uri"], write=True)
    return ResolvedSuite(spec, claims, model)


def build_eval_spec_configmap(suite: EvalSuite, ctx: BuildContext) -> dict[str, Any]:
    return resolved_configmap(suite, resolve_suite(suite, ctx).spec)


def build_eval_job(suite: EvalSuite, ctx: BuildContext) -> dict[str, Any]:
    """One pod that asks the served model every item and writes `{results, average, groups}` when done."""
    runtime = suite.spec.workers.runtime
    resolved = resolve_suite(suite, ctx)
    command = ["sailvl", "eval", "--spec", SPEC_PATH]
    container = worker_container(EVAL, command, runtime, ctx, resolved.claims, env=model_env(suite), metrics=True)
    return build_job(
        suite,
        ctx,
        name=eval_job_name(suite.name),
        component=EVAL,
        container=container,
        runtime=runtime,
        claims=resolved.claims,
        field="spec.workers.runtime",
    )


def build_eval_children(suite: EvalSuite, ctx: BuildContext) -> list[dict[str, Any]]:
    """Everything the suite creates over its life, in creation order."""
    return [build_eval_spec_configmap(suite, ctx), *build_servers(suite, ctx), build_eval_job(suite, ctx)]
