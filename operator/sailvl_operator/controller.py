"""The I/O shell shared by the handlers of every kind: locks, caches, applying a plan's children, status
and Events, and scheduling reconciles from watch events. Decisions live in pure modules (`reconcile`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from sailvl_operator.k8s import (
    BY_KIND,
    CONFIGMAPS,
    CURATIONRUNS,
    EVALSUITES,
    TRAINSTAGES,
    ApiError,
    ApiResource,
    Conflict,
    KubeClient,
)
from sailvl_operator.metrics import OperatorMetrics
from sailvl_operator.settings import Settings
from sailvl_operator.watchlag import WatchLag

logger = logging.getLogger(__name__)
COMPONENT = "sailvl-operator"
Key = tuple[str, str, str]  # (kind, namespace, name)
PROBED = {"TrainStage": TRAINSTAGES, "CurationRun": CURATIONRUNS, "EvalSuite": EVALSUITES}  # whose watches lag


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`; {} when they are equal."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            both = isinstance(old[key], Mapping) and isinstance(value, Mapping)
            patch[key] = merge_patch(old[key], value) if both else value
    return patch


@dataclass
class Controller:
    """State the handlers share for the life of one operator process."""

    settings: Settings
    client: KubeClient
    metrics: OperatorMetrics
    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)  # the latest known body of each resource
    phases: dict[Key, str | None] = field(default_factory=dict)  # the phase each resource was last seen in
    _references: dict[Key, list[Key]] = field(default_factory=dict)  # dependent -> what it waits for
    _dependents: dict[Key, set[Key]] = field(default_factory=dict)  # dependency -> who waits for it
    _tracked: dict[Key, int] = field(default_factory=dict)  # dependent -> the spec generation tracked
    reconcilers: dict[str, Callable[[str, str], Awaitable[Any]]] = field(default_factory=dict)  # kind -> reconcile
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    _scheduled: set[Key] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    watch_lag: WatchLag = field(default_factory=WatchLag)

    def lock(self, key: Key) -> asyncio.Lock:
        """One reconcile per resource at a time: change handlers, timers and watch events all go through it."""
        return self._locks.setdefault(key, asyncio.Lock())

    def remember(self, key: Key, body: Mapping[str, Any]) -> None:
        """Keep the newest body known for `key`, from watch events and from our own writes (whichever arrives
        last may be the older one). Reconciles start from it, as controllers start from an informer cache;
        status writes carry its resourceVersion, so a stale one is refused (409) and read again."""
        old = self.bodies.get(key)
        if old is None or _version(body) >= _version(old):
            self.bodies[key] = dict(body)

    def forget(self, key: Key) -> None:
        self.bodies.pop(key, None)
        self.phases.pop(key, None)
        self.track(key, [])
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def track(self, dependent: Key, dependencies: list[Key], *, generation: int | None = None) -> None:
        """Record what `dependent` (at `generation` of its spec) waits for, so a change of those can wake it."""
        for old in self._references.pop(dependent, []):
            self._dependents.get(old, set()).discard(dependent)
        self._tracked.pop(dependent, None)
        if generation is not None:
            self._tracked[dependent] = generation
        if dependencies:
            self._references[dependent] = dependencies
            for dep in dependencies:
                self._dependents.setdefault(dep, set()).add(dependent)

    def tracked_generation(self, dependent: Key) -> int | None:
        return self._tracked.get(dependent)

    def dependents(self, key: Key) -> list[Key]:
        return sorted(self._dependents.get(key, ()))

    def schedule(self, key: Key, work: Callable[[], Awaitable[Any]]) -> None:
        """Run `work` soon, once, however many events ask for it before it starts."""
        if key in self._scheduled:
            return
        self._scheduled.add(key)

        async def run() -> None:
            self._scheduled.discard(key)
            try:
                await work()
            except Exception:  # an event-driven reconcile has no caller to report to; the timer retries
                logger.exception("reconcile of %s/%s failed", key[0], key[2])

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self, key: Key) -> None:
        """Reconcile `key` soon with the reconcile registered for its kind (a kind without one is ignored)."""
        reconcile = self.reconcilers.get(key[0])
        if reconcile is not None:
            self.schedule(key, lambda: reconcile(key[1], key[2]))

    async def probe_watches(self) -> None:
        """List every resource of each kind and set how far its watch is behind (`WatchLag`)."""
        for kind, resource in PROBED.items():
            items: list[dict[str, Any]] = []
            for namespace in self.settings.namespaces or (None,):
                items += await self.client.list(resource, namespace)
            now = time.time()
            self.watch_lag.listed(kind, items, now)
            self.metrics.watch_lag.labels(kind=kind).set(self.watch_lag.lag(kind, now))

    def start_watch_probe(self) -> None:
        """Probe the watches every `watch_probe_interval` seconds for the life of the operator."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.settings.watch_probe_interval)
                try:
                    await self.probe_watches()
                except ApiError as exc:  # the next probe tries again
                    logger.warning("watch probe failed: %s", exc)

        task = asyncio.get_running_loop().create_task(loop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def create_children(self, owner: Mapping[str, Any], children: list[dict[str, Any]]) -> None:
        """Create the children owned by `owner`, all at once (pods wait for their ConfigMaps anyway). A
        ConfigMap that exists is updated; another child that exists (its deterministic name taken by an
        earlier, interrupted reconcile) is left as it is."""
        owner_body = kopf.Body(cast(kopf.RawBody, dict(owner)))
        for child in children:
            kopf.adopt(child, owner=owner_body)
        results = await asyncio.gather(*(self._create(owner, child) for child in children), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _create(self, owner: Mapping[str, Any], child: dict[str, Any]) -> None:
        namespace = (owner.get("metadata") or {}).get("namespace")
        resource = _resource_of(child)
        try:
            await self.client.create(resource, namespace, child)
        except Conflict:
            if resource == CONFIGMAPS:
                await self.client.patch(resource, namespace, child["metadata"]["name"], {"data": child["data"]})
        except ApiError as exc:
            if not exc.transient:
                name = child["metadata"]["name"]
                await self.event(owner, "Warning", "CreateFailed", f"cannot create {child['kind']} {name}: {exc}")
            raise

    async def write_status(
        self, resource: ApiResource, body: Mapping[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        """Patch only what changed in `status`, provided the object is still at `body`'s resourceVersion
        (else `Conflict`); returns the object as it now is."""
        patch = merge_patch(body.get("status") or {}, status)
        if not patch:
            return dict(body)
        meta = body["metadata"]
        precondition = {"resourceVersion": meta["resourceVersion"]} if meta.get("resourceVersion") else {}
        return await self.client.patch(
            resource,
            meta.get("namespace"),
            meta["name"],
            {"metadata": precondition, "status": patch},
            subresource="status",
        )

    async def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        await self.client.post_event(involved, type_, reason, message, component=COMPONENT)


def _version(body: Mapping[str, Any]) -> int:
    """etcd's revision behind a resourceVersion; -1 when it is not a number (then any newer copy wins)."""
    version = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else -1


def _resource_of(obj: Mapping[str, Any]) -> ApiResource:
    return BY_KIND[str(obj["kind"])]
