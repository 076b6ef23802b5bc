"""TrainStage: observe (the stage, its dependencies, its job and pods), decide (`reconcile`), apply."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sailvl.api import ManifestError, parse_resource
from sailvl.api.conditions import RUNNING
from sailvl_operator.controller import Controller, Key
from sailvl_operator.jobs import job_state, pod_ip, pod_selector
from sailvl_operator.k8s import BY_KIND, CURATIONRUNS, PODS, TRAINSTAGES, ApiError, Conflict, NotFound
from sailvl_operator.progress import MetricsError, TrainSample, apply_progress, parse_metrics, progress_since
from sailvl_operator.reconcile import Dependency, Observation, Plan, current_status, reconcile

logger = logging.getLogger(__name__)
KIND = "TrainStage"
FINISHED = ("Succeeded", "Failed")


def key(namespace: str, name: str) -> Key:
    return (KIND, namespace, name)


def references(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of what a resource waits for; none if the spec does not parse (it will be reported)."""
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
        "spec": body.get("spec"),
    }
    try:
        resource = parse_resource(doc)
    except ManifestError:
        return []
    return resource.references()


async def dependency(ctl: Controller, namespace: str, kind: str, name: str) -> Dependency:
    cached = ctl.bodies.get((kind, namespace, name))
    if cached is None:
        cached = await ctl.client.get(TRAINSTAGES if kind == KIND else CURATIONRUNS, namespace, name)
    return Dependency(kind, name, cached)


async def observe(ctl: Controller, body: Mapping[str, Any]) -> Observation:
    namespace = body["metadata"]["namespace"]
    status = current_status(body)
    deps: list[Dependency] = []
    if status.job is None:  # once a job exists, its inputs are fixed (status.resolved)
        deps = [await dependency(ctl, namespace, kind, name) for kind, name in references(body)]
    job = pods = None
    if status.job is not None:
        job = await ctl.client.get(BY_KIND[status.job.kind], namespace, status.job.name)
        if job is not None and job_state(job).phase in FINISHED:
            selector = pod_selector(status.job.kind, status.job.name)
            pods = await ctl.client.list(PODS, namespace, label_selector=selector)
    return Observation(body=body, now=datetime.now(UTC), dependencies=deps, job=job, pods=pods or [])


async def reconcile_stage(ctl: Controller, namespace: str, name: str) -> Plan | None:
    """Bring one stage closer to what its spec asks for; None if it no longer exists."""
    started = time.monotonic()
    result = "error"
    try:
        async with ctl.lock(key(namespace, name)):
            body = ctl.bodies.get(key(namespace, name)) or await fetch(ctl, namespace, name)
            for _ in range(3):
                if body is None:
                    result = "gone"
                    return None
                plan = reconcile(await observe(ctl, body), ctl.settings)
                try:
                    await apply(ctl, body, plan)
                except Conflict:  # changed since it was read: read it again and decide again
                    body = await fetch(ctl, namespace, name)
                    continue
                except NotFound:
                    ctl.forget(key(namespace, name))
                    result = "gone"
                    return None
                result = plan.result
                logger.debug("reconciled TrainStage %s/%s: %s, %d created", namespace, name, result, len(plan.create))
                return plan
            raise ApiError(409, "Conflict", f"TrainStage {namespace}/{name} kept changing while being reconciled")
    finally:
        ctl.metrics.reconciles.labels(kind=KIND, result=result).inc()
        ctl.metrics.reconcile_seconds.labels(kind=KIND).observe(time.monotonic() - started)


async def fetch(ctl: Controller, namespace: str, name: str) -> dict[str, Any] | None:
    body = await ctl.client.get(TRAINSTAGES, namespace, name)
    if body is not None:
        ctl.remember(key(namespace, name), body)
    return body


async def apply(ctl: Controller, body: Mapping[str, Any], plan: Plan) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for kind, job_name in plan.delete:
        await ctl.client.delete(BY_KIND[kind], namespace, job_name)
    if plan.create:
        await ctl.create_children(body, plan.create)
    updated = await ctl.write_status(TRAINSTAGES, body, plan.status)
    ctl.remember(key(namespace, name), updated)
    note_phase(ctl, key(namespace, name), plan.status.get("phase"))
    for event in plan.events:
        await ctl.event(body, event.type, event.reason, event.message)
    if plan.restarted:
        ctl.metrics.restarts.labels(namespace=namespace, name=name).inc()


def note_phase(ctl: Controller, resource: Key, phase: str | None) -> None:
    """Remember `resource`'s phase; when it enters or leaves Succeeded/Failed, reconcile at once the resources
    that wait for it (stages only until they start; the first sighting wakes nobody: resume handlers cover
    startup)."""
    known, before = resource in ctl.phases, ctl.phases.get(resource)
    ctl.phases[resource] = phase
    if not known or before == phase or not {phase, before} & set(FINISHED):
        return
    for dependent in ctl.dependents(resource):
        if dependent[0] == KIND and ((ctl.bodies.get(dependent) or {}).get("status") or {}).get("job"):
            continue  # a started stage's inputs are fixed
        logger.debug("%s/%s is %s: waking %s/%s", resource[0], resource[2], phase, dependent[0], dependent[2])
        ctl.wake(dependent)


async def scrape(url: str, timeout: float) -> tuple[TrainSample | None, str]:
    """Rank 0's figures, or None and why they could not be read."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as rsp,
        ):
            if rsp.status != 200:
                return None, f"GET {url} answered {rsp.status}"
            return parse_metrics(await rsp.text()), ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, f"GET {url} failed: {type(exc).__name__} {exc}".strip()
    except MetricsError as exc:
        return None, f"{url}: {exc}"


async def refresh_progress(ctl: Controller, namespace: str, name: str) -> None:
    """Read rank 0's metrics into status.progress (and the progress and loss gauges)."""
    async with ctl.lock(key(namespace, name)):
        body = ctl.bodies.get(key(namespace, name)) or await fetch(ctl, namespace, name)
        if body is None:
            return
        status = current_status(body)
        if status.job is None or status.phase != "Running":
            return
        selector = pod_selector(status.job.kind, status.job.name, rank0=True)
        pods = await ctl.client.list(PODS, namespace, label_selector=selector)
        ip = next((pod_ip(p) for p in pods if pod_ip(p)), None)
        if ip is None:
            sample, error = None, f"rank 0 of {status.job.name} has no running pod with an address yet"
        else:
            sample, error = await scrape(
                f"http://{ip}:{ctl.settings.trainer_metrics_port}/metrics", ctl.settings.scrape_timeout
            )
        generation = body["metadata"].get("generation")
        new = apply_progress(status, sample, error, datetime.now(UTC), generation)
        try:
            ctl.remember(key(namespace, name), await ctl.write_status(TRAINSTAGES, body, new.to_manifest()))
        except Conflict:  # the stage changed meanwhile; the next read writes the progress
            await fetch(ctl, namespace, name)
        except ApiError as exc:
            logger.warning("could not write the progress of TrainStage %s/%s: %s", namespace, name, exc)
        observe_gauges(ctl, namespace, name, new.to_manifest())


def observe_gauges(ctl: Controller, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    ctl.metrics.restarts.labels(namespace=namespace, name=name)  # from 0: no restart yet is 0, not no data
    progress = status.get("progress") or {}
    if isinstance(progress.get("percent"), int | float):
        ctl.metrics.progress.labels(namespace=namespace, name=name).set(progress["percent"] / 100.0)
    if isinstance(progress.get("loss"), int | float):
        ctl.metrics.loss.labels(namespace=namespace, name=name).set(progress["loss"])
    running = next((x for x in status.get("conditions") or [] if x.get("type") == RUNNING), None)
    since = None
    if running is not None and running.get("status") == "True" and running.get("lastTransitionTime"):
        since = progress_since(running["lastTransitionTime"], progress.get("lastAdvanceTime")).timestamp()
    ctl.metrics.observe_progress_since(namespace, name, since)
