"""The only module that talks to the Kubernetes API, and the table of every permission the operator needs.

`PERMISSIONS` lists, as data, each (apiGroup, resource, verbs) the operator uses, including what kopf itself
does (watching our resources, patching their annotations and status, posting Events, peering, scanning CRDs
and namespaces). The chart's RBAC is generated from it; a test checks that every call below is covered.

`KubeClient` is a small asyncio client over aiohttp with kopf's connection info (the same credentials kopf
logs in with), so handlers never block on API latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import kopf

logger = logging.getLogger(__name__)

Verb = Literal["get", "list", "watch", "create", "update", "patch", "delete"]
Scope = Literal["namespace", "cluster"]


@dataclass(frozen=True)
class Permission:
    """One RBAC rule: `verbs` on `resource` of `api_group`, and why the operator needs it."""

    api_group: str
    resource: str
    verbs: tuple[Verb, ...]
    why: str
    scope: Scope = "namespace"  # "cluster": needed cluster-wide even when only some namespaces are watched


PERMISSIONS: tuple[Permission, ...] = (
    # Our resources: kopf watches them and keeps its handler state in annotations; we read references.
    Permission("sailvl.io", "trainstages", ("get", "list", "watch", "patch"), "watch stages; kopf's annotations"),
    Permission("sailvl.io", "trainstages/status", ("patch",), "write conditions, progress, checkpoints"),
    Permission(
        "sailvl.io",
        "curationruns",
        ("get", "list", "watch", "patch"),
        "watch runs (stages read them); kopf's annotations",
    ),
    Permission("sailvl.io", "curationruns/status", ("patch",), "write conditions, progress, output"),
    Permission("sailvl.io", "evalsuites", ("get", "list", "watch", "patch"), "watch suites; kopf's annotations"),
    Permission("sailvl.io", "evalsuites/status", ("patch",), "write conditions, results, groups"),
    # The children of a TrainStage.
    Permission("", "configmaps", ("get", "create", "patch"), "the resolved spec mounted into trainer and worker pods"),
    Permission("kubeflow.org", "pytorchjobs", ("get", "list", "watch", "create", "delete"), "the trainer gang"),
    Permission("trainer.kubeflow.org", "trainjobs", ("get", "list", "watch", "create", "delete"), "the trainer gang"),
    Permission(
        "", "pods", ("list",), "rank 0's address; exit codes and termination messages; why a model is not ready"
    ),
    # The children of a CurationRun or an EvalSuite: vLLM servers and worker Jobs.
    Permission("apps", "deployments", ("list", "watch", "create", "patch"), "vLLM servers, scaled to zero when done"),
    Permission("", "services", ("list", "create"), "the address workers reach a vLLM server at"),
    Permission("batch", "jobs", ("list", "watch", "create", "delete"), "curation workers, finalize, eval"),
    # Events: ours, and those kopf posts about handler outcomes.
    Permission("", "events", ("create",), "Events on resources (kubectl describe)"),
    # kopf itself: peering between replicas, and the discovery of resources and namespaces.
    Permission("kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch"), "kopf peering per namespace"),
    Permission(
        "kopf.dev", "clusterkopfpeerings", ("get", "list", "watch", "patch"), "kopf cluster-wide peering", "cluster"
    ),
    Permission(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "kopf discovers the served resources",
        "cluster",
    ),
    Permission("", "namespaces", ("list", "watch"), "kopf follows the watched namespaces", "cluster"),
)


@dataclass(frozen=True)
class ApiResource:
    """A resource as the API paths name it."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


TRAINSTAGES = ApiResource("sailvl.io", "v1alpha1", "trainstages", "TrainStage")
CURATIONRUNS = ApiResource("sailvl.io", "v1alpha1", "curationruns", "CurationRun")
CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap")
PODS = ApiResource("", "v1", "pods", "Pod")
EVENTS = ApiResource("", "v1", "events", "Event")
EVALSUITES = ApiResource("sailvl.io", "v1alpha1", "evalsuites", "EvalSuite")
PYTORCHJOBS = ApiResource("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")
TRAINJOBS = ApiResource("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
DEPLOYMENTS = ApiResource("apps", "v1", "deployments", "Deployment")
SERVICES = ApiResource("", "v1", "services", "Service")
JOBS = ApiResource("batch", "v1", "jobs", "Job")
BY_KIND = {
    r.kind: r
    for r in (
        TRAINSTAGES,
        CURATIONRUNS,
        EVALSUITES,
        CONFIGMAPS,
        PODS,
        EVENTS,
        PYTORCHJOBS,
        TRAINJOBS,
        DEPLOYMENTS,
        SERVICES,
        JOBS,
    )
}


class ApiError(Exception):
    """The API server refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)


class KubeClient:
    """Get, list, create, patch and delete objects, and post Events. One aiohttp session per event loop."""

    def __init__(self, credentials: Callable[[], kopf.ConnectionInfo], *, timeout: float = 30.0) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._info: kopf.ConnectionInfo | None = None
        self.instance = os.environ.get("HOSTNAME") or socket.gethostname()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _connect(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            info = self._info = self._credentials()
            ssl = info.as_ssl_context() if info.server.startswith("https") else False
            self._session = aiohttp.ClientSession(
                base_url=info.server.rstrip("/"),
                headers=info.as_http_headers(),
                connector=aiohttp.TCPConnector(ssl=ssl, limit=100),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def _request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None, ctype: str = ""
    ) -> Any:
        headers = {"Content-Type": ctype or "application/json"} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        relogged = False
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            session = self._connect()
            try:
                async with session.request(method, path, data=data, params=params, headers=headers) as rsp:
                    payload = await rsp.json(content_type=None) if rsp.content_length != 0 else None
                    if rsp.status < 400:
                        return payload
                    error = _error(rsp.status, payload)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                error = ApiError(503, type(exc).__name__, str(exc) or "connection failed")
            if error.status == 401 and not relogged:  # rotated token: log in again once
                relogged = True
                await self.close()
                continue
            if not error.transient or delay is None:
                raise error
            logger.debug("%s %s failed (%s); retry %d in %.1fs", method, path, error, attempt + 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def get(self, resource: ApiResource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._request("GET", resource.path(namespace, name))
        except NotFound:
            return None
        return found

    async def list(
        self, resource: ApiResource, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        found = await self._request("GET", resource.path(namespace), params=params)
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    async def create(self, resource: ApiResource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._request("POST", resource.path(namespace), body=body)
        return created

    async def patch(
        self,
        resource: ApiResource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): lists are replaced, `None` removes a key."""
        path = resource.path(namespace, name, subresource)
        patched: dict[str, Any] = await self._request("PATCH", path, body=patch, ctype="application/merge-patch+json")
        return patched

    async def delete(self, resource: ApiResource, namespace: str | None, name: str) -> bool:
        """Delete with background propagation (the job's pods go with it); False if it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            await self._request("DELETE", resource.path(namespace, name), body=body)
        except NotFound:
            return False
        return True

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str, *, component: str
    ) -> None:
        """A core/v1 Event about `involved` (what `kubectl describe` shows). Failures are logged, not raised:
        an Event is worth less than the reconcile that wanted to post it."""
        meta = involved.get("metadata") or {}
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'sailvl')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": self.instance,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "action": reason,
            "count": 1,
        }
        try:
            await self.create(EVENTS, meta.get("namespace"), event)
        except ApiError as exc:
            logger.warning("could not post Event %s on %s/%s: %s", reason, involved.get("kind"), meta.get("name"), exc)


def _error(status: int, payload: Any) -> ApiError:
    reason = payload.get("reason", "") if isinstance(payload, dict) else ""
    message = payload.get("message", "") if isinstance(payload, dict) else str(payload)
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409:
        return Conflict(status, reason or "AlreadyExists", message)
    return ApiError(status, reason or "Error", message)
