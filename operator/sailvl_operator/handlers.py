"""kopf registrations: which events reach which reconcile. Built per operator (`build_registry`), so the
intervals come from settings and tests can run an operator with their own.

Level-based throughout: create, update and resume handlers converge a resource; a timer re-converges it (and
catches anything a missed event would have told); watch events of its children (jobs, vLLM Deployments) and of
the resources it waits for wake it at once.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from sailvl.api import API_GROUP, API_VERSION
from sailvl.api import conditions as c
from sailvl_operator.builders.meta import KIND_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL
from sailvl_operator.controller import COMPONENT, Controller
from sailvl_operator.k8s import ApiError, KubeClient
from sailvl_operator.metrics import OperatorMetrics
from sailvl_operator.settings import Settings
from sailvl_operator.stages import KIND, key, note_phase, observe_gauges, reconcile_stage, references, refresh_progress
from sailvl_operator.workloads import KINDS, observe_status, reconcile_workload

logger = logging.getLogger(__name__)
VERSION = API_VERSION.split("/")[1]
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
KOPF_PREFIX = f"operator.{API_GROUP}"


def connect(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In a pod, the service account; elsewhere the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig (set KUBECONFIG) to reach the cluster")
    return info


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    # Handler state in annotations: our CRDs are structural, so a real API server prunes kopf's default
    # `status.kopf` field. Not under `sailvl.io/`: kopf ignores changes to its storages' prefixes, and a new
    # `sailvl.io/retry` annotation must reach the update handler.
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    kopf_settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    # A watch that delivers nothing for this long is presumed dead and restarted (kopf >= 1.44).
    kopf_settings.watching.inactivity_timeout = settings.watch_inactivity_timeout
    kopf_settings.posting.reporting_component = COMPONENT
    kopf_settings.posting.level = logging.WARNING


def _condition(body: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((x for x in conditions if isinstance(x, Mapping) and x.get("type") == type_), {})


def _version(event: kopf.RawEvent) -> str | None:
    version = (event["object"].get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None


def _ns(namespace: str | None) -> str:
    assert namespace is not None, "sailvl resources and their jobs are namespaced"
    return namespace


def needs_timer(body: kopf.Body, **_: Any) -> bool:
    """Everything but a finished stage (one whose dependency failed is re-checked: it may be retried)."""
    if (body.get("status") or {}).get("phase") == "Succeeded":
        return False
    failed = _condition(body, c.FAILED)
    return not (failed.get("status") == "True" and failed.get("reason") != c.REASON_DEPENDENCY_FAILED)


def is_running(body: kopf.Body, **_: Any) -> bool:
    return (body.get("status") or {}).get("phase") == "Running"


def jittered(interval: float) -> Callable[..., float]:
    """A first delay spread over 0.5-1.5 intervals, so the timers of many stages do not all fire at once."""

    def delay(**_: Any) -> float:
        return random.uniform(0.5, 1.5) * interval

    return delay


def build_registry(
    settings: Settings, metrics: OperatorMetrics | None = None
) -> tuple[kopf.OperatorRegistry, Controller]:
    """The handlers of one operator, and the controller state they share."""
    registry = kopf.OperatorRegistry()
    kopf_state: dict[str, kopf.OperatorSettings] = {}

    def credentials() -> kopf.ConnectionInfo:
        return connect(kopf_state["settings"])

    ctl = Controller(settings=settings, client=KubeClient(credentials), metrics=metrics or OperatorMetrics())
    ctl.reconcilers[KIND] = functools.partial(reconcile_stage, ctl)
    for kind in KINDS:
        ctl.reconcilers[kind] = functools.partial(reconcile_workload, ctl, kind)
    register_lifecycle(registry, ctl, kopf_state)
    register_trainstages(registry, ctl)
    for kind, (resource, _) in KINDS.items():
        register_workload(registry, ctl, kind, resource.plural)
    register_watches(registry, ctl)
    register_children(registry, ctl)
    return registry, ctl


def register_lifecycle(
    registry: kopf.OperatorRegistry, ctl: Controller, kopf_state: dict[str, kopf.OperatorSettings]
) -> None:
    @kopf.on.startup(id="configure", registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        kopf_state["settings"] = settings
        configure_kopf(settings, ctl.settings)
        ctl.start_watch_probe()

    @kopf.on.login(id="login", registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        kopf_state["settings"] = settings
        return connect(settings)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(**_: Any) -> None:
        await ctl.drain()
        await ctl.client.close()


def _register_convergence(
    registry: kopf.OperatorRegistry,
    ctl: Controller,
    resources: tuple[str, str, str],
    kind: str,
    reconcile: Callable[[str, str], Awaitable[Any]],
) -> None:
    """Converge a resource when it appears, changes or the operator starts, and again on a timer.

    `reconcile(namespace, name)` returns the plan it carried out (None when the resource is gone).
    """
    settings = ctl.settings

    @kopf.on.resume(*resources, id="converge", registry=registry)
    @kopf.on.create(*resources, id="converge", registry=registry)
    @kopf.on.update(*resources, id="converge", registry=registry)
    async def converge(namespace: str | None, name: str, **_: Any) -> None:
        try:
            plan = await reconcile(_ns(namespace), name)
        except ApiError as exc:
            raise kopf.TemporaryError(f"the API refused a request: {exc}", delay=10) from exc
        if plan is not None and plan.result == "invalid":
            raise kopf.PermanentError(f"invalid spec: {plan.message}")
        # Waiting for a dependency is a state (DependenciesReady=False), not a handler failure: the
        # dependency's own events wake the resource, and the timer re-checks it.

    @kopf.timer(
        *resources,
        id="reconverge",
        interval=settings.timer_interval,
        initial_delay=jittered(settings.timer_interval),
        when=needs_timer,
        registry=registry,
    )
    async def reconverge(namespace: str | None, name: str, **_: Any) -> None:
        try:
            await reconcile(_ns(namespace), name)
        except ApiError as exc:  # the next tick tries again
            logger.warning("periodic reconcile of %s %s/%s failed: %s", kind, namespace, name, exc)


def register_trainstages(registry: kopf.OperatorRegistry, ctl: Controller) -> None:
    """Converge a stage when it appears, changes or the operator starts, and on a timer; refresh its progress
    while it runs."""
    stages = (API_GROUP, VERSION, "trainstages")
    settings = ctl.settings
    _register_convergence(registry, ctl, stages, KIND, functools.partial(reconcile_stage, ctl))

    @kopf.timer(*stages, id="progress", interval=settings.progress_interval, when=is_running, registry=registry)
    async def progress(namespace: str | None, name: str, **_: Any) -> None:
        try:
            await refresh_progress(ctl, _ns(namespace), name)
        except ApiError as exc:
            logger.warning("progress of TrainStage %s/%s not refreshed: %s", namespace, name, exc)


def register_watches(registry: kopf.OperatorRegistry, ctl: Controller) -> None:
    """Watch events: keep the caches and metrics current, and wake the stages an event concerns."""

    @kopf.on.event(API_GROUP, VERSION, "trainstages", id="stage-event", registry=registry)
    async def stage_event(event: kopf.RawEvent, type: str, namespace: str | None, name: str, **_: Any) -> None:
        namespace = _ns(namespace)
        ctl.metrics.last_event.labels(kind=KIND).set(time.time())
        ctl.watch_lag.deliver(KIND, namespace, name, _version(event), deleted=type == "DELETED")
        if type == "DELETED":
            ctl.forget(key(namespace, name))
            ctl.metrics.observe_phase(KIND, namespace, name, None)
            ctl.metrics.forget_stage(namespace, name)
            return
        raw = event["object"]
        ctl.remember(key(namespace, name), raw)
        found = (raw.get("metadata") or {}).get("generation")
        generation = found if isinstance(found, int) else None
        if ctl.tracked_generation(key(namespace, name)) != generation:  # references change with the spec only
            refs = [(kind, namespace, ref) for kind, ref in references(raw)]
            ctl.track(key(namespace, name), refs, generation=generation)
        status = raw.get("status") or {}
        ctl.metrics.observe_phase(KIND, namespace, name, status.get("phase"))
        observe_gauges(ctl, namespace, name, status)
        note_phase(ctl, key(namespace, name), status.get("phase"))

    async def job_event(job_kind: str, event: kopf.RawEvent, type: str, namespace: str) -> None:
        ctl.metrics.last_event.labels(kind=job_kind).set(time.time())
        labels = (event["object"].get("metadata") or {}).get("labels") or {}
        if type not in ("MODIFIED", "DELETED") or labels.get(KIND_LABEL) != KIND or not labels.get(NAME_LABEL):
            return  # our own creations need no reaction; the resume handlers cover the initial listing
        owner = labels[NAME_LABEL]
        ctl.schedule(key(namespace, owner), functools.partial(reconcile_stage, ctl, namespace, owner))

    @kopf.on.event("kubeflow.org", "v1", "pytorchjobs", id="job-event", labels=MANAGED, registry=registry)
    async def pytorchjob_event(event: kopf.RawEvent, type: str, namespace: str | None, **_: Any) -> None:
        await job_event("PyTorchJob", event, type, _ns(namespace))

    @kopf.on.event("trainer.kubeflow.org", "v1alpha1", "trainjobs", id="job-event", labels=MANAGED, registry=registry)
    async def trainjob_event(event: kopf.RawEvent, type: str, namespace: str | None, **_: Any) -> None:
        await job_event("TrainJob", event, type, _ns(namespace))


def register_workload(registry: kopf.OperatorRegistry, ctl: Controller, kind: str, plural: str) -> None:
    """A CurationRun or an EvalSuite: converge on create, update and resume, and again on a timer (which also
    fails models that never become ready); its watch events keep the cache, the gauges and its dependents."""
    resources = (API_GROUP, VERSION, plural)
    _register_convergence(registry, ctl, resources, kind, functools.partial(reconcile_workload, ctl, kind))

    @kopf.on.event(*resources, id=f"{plural}-event", registry=registry)
    async def resource_event(event: kopf.RawEvent, type: str, namespace: str | None, name: str, **_: Any) -> None:
        namespace = _ns(namespace)
        ctl.metrics.last_event.labels(kind=kind).set(time.time())
        ctl.watch_lag.deliver(kind, namespace, name, _version(event), deleted=type == "DELETED")
        this = (kind, namespace, name)
        if type == "DELETED":
            ctl.forget(this)
            observe_status(ctl, kind, namespace, name, None)
            return
        raw = event["object"]
        ctl.remember(this, raw)
        found = (raw.get("metadata") or {}).get("generation")
        generation = found if isinstance(found, int) else None
        if ctl.tracked_generation(this) != generation:
            ctl.track(this, [(k, namespace, ref) for k, ref in references(raw)], generation=generation)
        status = raw.get("status") or {}
        observe_status(ctl, kind, namespace, name, status)
        note_phase(ctl, this, status.get("phase"))


def register_children(registry: kopf.OperatorRegistry, ctl: Controller) -> None:
    """A change of a vLLM Deployment or a worker Job wakes the resource that owns it."""

    async def child_event(child_kind: str, event: kopf.RawEvent, type: str, namespace: str) -> None:
        ctl.metrics.last_event.labels(kind=child_kind).set(time.time())
        labels = (event["object"].get("metadata") or {}).get("labels") or {}
        owner_kind, owner = labels.get(KIND_LABEL), labels.get(NAME_LABEL)
        if type in ("MODIFIED", "DELETED") and owner_kind in KINDS and owner:
            ctl.wake((owner_kind, namespace, owner))

    @kopf.on.event("apps", "v1", "deployments", id="deployment-event", labels=MANAGED, registry=registry)
    async def deployment_event(event: kopf.RawEvent, type: str, namespace: str | None, **_: Any) -> None:
        await child_event("Deployment", event, type, _ns(namespace))

    @kopf.on.event("batch", "v1", "jobs", id="job-event", labels=MANAGED, registry=registry)
    async def batch_job_event(event: kopf.RawEvent, type: str, namespace: str | None, **_: Any) -> None:
        await child_event("Job", event, type, _ns(namespace))
