"""CurationRun and EvalSuite: observe (the resource, its dependencies, and the Deployments, Services, Jobs and
pods it owns, found by its labels), decide (`runs.reconcile_run`, `suites.reconcile_suite`), apply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sailvl_operator.builders.meta import KIND_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL
from sailvl_operator.controller import Controller, Key
from sailvl_operator.k8s import (
    CURATIONRUNS,
    DEPLOYMENTS,
    EVALSUITES,
    JOBS,
    PODS,
    SERVICES,
    ApiError,
    ApiResource,
    Conflict,
    NotFound,
)
from sailvl_operator.runs import reconcile_run
from sailvl_operator.served import WorkloadObservation, WorkloadPlan
from sailvl_operator.settings import Settings
from sailvl_operator.stages import dependency, note_phase, references
from sailvl_operator.suites import reconcile_suite

logger = logging.getLogger(__name__)
Decide = Callable[[WorkloadObservation, Settings], WorkloadPlan]
KINDS: dict[str, tuple[ApiResource, Decide]] = {
    "CurationRun": (CURATIONRUNS, reconcile_run),
    "EvalSuite": (EVALSUITES, reconcile_suite),
}


def owned_by(kind: str, name: str) -> str:
    """The label selector of everything a resource owns."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{KIND_LABEL}={kind},{NAME_LABEL}={name}"


async def observe(ctl: Controller, kind: str, body: Mapping[str, Any]) -> WorkloadObservation:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    deps = [await dependency(ctl, namespace, ref_kind, ref) for ref_kind, ref in references(body)]
    selector = owned_by(kind, name)
    deployments, services, jobs, pods = await asyncio.gather(
        *(ctl.client.list(r, namespace, label_selector=selector) for r in (DEPLOYMENTS, SERVICES, JOBS, PODS))
    )
    return WorkloadObservation(
        body=body,
        now=datetime.now(UTC),
        dependencies=deps,
        deployments=deployments,
        services=services,
        jobs=jobs,
        pods=pods,
    )


async def reconcile_workload(ctl: Controller, kind: str, namespace: str, name: str) -> WorkloadPlan | None:
    """Bring one CurationRun or EvalSuite closer to what its spec asks for; None if it no longer exists."""
    decide = KINDS[kind][1]
    key: Key = (kind, namespace, name)
    started = time.monotonic()
    result = "error"
    try:
        async with ctl.lock(key):
            body = ctl.bodies.get(key) or await fetch(ctl, kind, namespace, name)
            for _ in range(3):
                if body is None:
                    result = "gone"
                    return None
                plan = decide(await observe(ctl, kind, body), ctl.settings)
                try:
                    await apply(ctl, kind, body, plan)
                except Conflict:  # changed since it was read: read it again and decide again
                    body = await fetch(ctl, kind, namespace, name)
                    continue
                except NotFound:
                    ctl.forget(key)
                    result = "gone"
                    return None
                result = plan.result
                logger.debug("reconciled %s %s/%s: %s, %d created", kind, namespace, name, result, len(plan.create))
                return plan
            raise ApiError(409, "Conflict", f"{kind} {namespace}/{name} kept changing while being reconciled")
    finally:
        ctl.metrics.reconciles.labels(kind=kind, result=result).inc()
        ctl.metrics.reconcile_seconds.labels(kind=kind).observe(time.monotonic() - started)


async def fetch(ctl: Controller, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    body = await ctl.client.get(KINDS[kind][0], namespace, name)
    if body is not None:
        ctl.remember((kind, namespace, name), body)
    return body


async def apply(ctl: Controller, kind: str, body: Mapping[str, Any], plan: WorkloadPlan) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for _, job in plan.delete:
        await ctl.client.delete(JOBS, namespace, job)
    for deployment, replicas in plan.scale:
        try:
            await ctl.client.patch(DEPLOYMENTS, namespace, deployment, {"spec": {"replicas": replicas}})
        except NotFound:  # deleted by someone meanwhile: the next reconcile recreates it if it is needed
            logger.info("Deployment %s/%s is gone; not scaled to %d", namespace, deployment, replicas)
    if plan.create:
        await ctl.create_children(body, plan.create)
    updated = await ctl.write_status(KINDS[kind][0], body, plan.status)
    if (kind, namespace, name) not in ctl.bodies:
        return  # its DELETED event came while this reconcile ran (an unchanged status is not written, so no 404)
    ctl.remember((kind, namespace, name), updated)
    note_phase(ctl, (kind, namespace, name), plan.status.get("phase"))
    observe_status(ctl, kind, namespace, name, plan.status)
    for event in plan.events:
        await ctl.event(body, event.type, event.reason, event.message)


def observe_status(ctl: Controller, kind: str, namespace: str, name: str, status: Mapping[str, Any] | None) -> None:
    """The gauges a status feeds (None: the resource is gone)."""
    ctl.metrics.observe_phase(kind, namespace, name, (status or {}).get("phase"))
    if kind == "EvalSuite":
        ctl.metrics.observe_scores(namespace, name, (status or {}).get("results"))
