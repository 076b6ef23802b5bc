"""A Kubernetes API emulator for kopf operators: kmock 0.8's KubernetesEmulator with what kopf needs.

kmock serves discovery, keeps objects and their history, and records requests. This subclass serves object
requests itself, as an API server does:

- create assigns uid, creationTimestamp, generation and a resourceVersion (from one counter, like etcd) and
  honours `generateName`; every change bumps the resourceVersion, a spec change the generation;
- patches are JSON merge patches (RFC 7386; strategic merge is treated alike) or JSON patches, whose failed
  `test` operations answer 422; the `status` subresource isolates status from the rest, as for CRDs;
- lists carry `kind: <Kind>List` and the current resourceVersion; lists and watches filter by
  `labelSelector` and `fieldSelector` (metadata.name, metadata.namespace);
- a watch honours `?resourceVersion=` by replaying the events since then (410 Gone when too old) and takes
  its snapshot and joins the event stream in one step, so no event falls between the two;
- deletion waits for finalizers; there is no garbage collection (assert ownerReferences instead).

For load tests, `keep_requests=False` drops served requests (kmock rescans its request log on every request
otherwise) and `keep_history=False` keeps only each object's latest version; objects are always found by key.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import random
import re
import string
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import apps, k8s_dicts, rendering

ObjectKey = tuple[kmock.resource, str | None, str]
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, copy on write: changed mappings are new, untouched ones are shared with `target`."""
    if not isinstance(patch, Mapping):
        return patch  # parsed from the request: shared with nothing
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in [*parts, current] if p.strip()]


def label_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: equality, inequality, set-based and existence requirements."""
    for requirement in _split_selector(selector):
        m = _REQUIREMENT.match(requirement)
        if m is None:
            raise kmock.KubernetesError(400, "BadRequest", f"unable to parse requirement: {requirement!r}")
        key, present = m["key"], m["key"] in labels
        if m["op"] in ("=", "=="):
            ok = present and labels[key] == m["value"]
        elif m["op"] == "!=":
            ok = not present or labels[key] != m["value"]
        elif m["setop"]:
            values = {v.strip() for v in m["values"].split(",")}
            ok = (present and labels[key] in values) if m["setop"] == "in" else not (present and labels[key] in values)
        else:
            ok = present
        if m["neg"]:
            ok = not present
        if not ok:
            return False
    return True


def field_matches(selector: str, obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    for requirement in _split_selector(selector):
        field, op, value = re.split(r"(!=|==|=)", requirement.strip(), maxsplit=1)
        known = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
        if field not in known:
            raise kmock.KubernetesError(400, "BadRequest", f"field label not supported: {field}")
        if (known[field] == value) != (op != "!="):
            return False
    return True


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    keep_requests: bool = True
    keep_history: bool = True
    latency: float = 0.0  # seconds added to every object request (a remote API server)
    event_log_size: int = 10000
    _rv: int = attrs.field(default=0, init=False)
    _by_resource: dict[kmock.resource, dict[tuple[str | None, str], k8s_dicts.Object]] = attrs.field(
        factory=dict, init=False
    )
    _log: dict[kmock.resource, collections.deque[tuple[int, dict[str, Any]]]] = attrs.field(factory=dict, init=False)
    _evicted: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)  # newest rv dropped from a log
    _watchers: dict[kmock.resource, set[tuple[asyncio.Queue[bytes], rendering.Request]]] = attrs.field(
        factory=dict, init=False
    )

    # -- setup ---------------------------------------------------------------------------------------------
    def declare(self, resource: str, kind: str, *, namespaced: bool = True, status: bool = False) -> kmock.resource:
        """Serve a resource kind (as a CRD or a built-in would): discovery, storage and watches."""
        res = kmock.resource(resource)
        self.resources[res] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources={"status"} if status else set()
        )
        self._by_resource.setdefault(res, {})
        return res

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def get(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (a copy), or None."""
        obj = self._by_resource.get(kmock.resource(resource), {}).get((namespace, name))
        return None if obj is None or obj.deleted else copy.deepcopy(obj.raw)

    def all(self, resource: str | kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        objs = self._by_resource.get(kmock.resource(resource), {})
        return [copy.deepcopy(o.raw) for (ns, _), o in objs.items() if not o.deleted and namespace in (None, ns)]

    def change_unwatched(self, resource: str, namespace: str | None, name: str, labels: dict[str, str]) -> str:
        """A new version of an object (new labels) whose watch event is lost, as a stalled watch would lose it;
        returns its resourceVersion."""
        res = kmock.resource(resource)
        obj = self._existing(res, namespace, name)
        new = copy.deepcopy(obj.raw)
        new["metadata"]["labels"] = {**(new["metadata"].get("labels") or {}), **labels}
        new["metadata"]["resourceVersion"] = self._bump()
        self._store(res, namespace, name, new)
        return str(new["metadata"]["resourceVersion"])

    # -- requests ------------------------------------------------------------------------------------------
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            return await super().__call__(raw_request)
        finally:
            if not self.keep_requests:
                self._requests.clear()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is None or resource.plural is None or request.action is None:
            return await apps.RawHandler._handle(self, request)  # discovery: kmock's own
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            if resource not in self._by_resource:
                raise kmock.KubernetesResourceNotFoundError(message=f"the server could not find {resource.plural}")
            if request.action == kmock.action.WATCH:
                return await self._watch(request)
            status, payload = self._serve(request)
        except kmock.KubernetesError as exc:
            return await self._render_error(exc)
        return aiohttp.web.json_response(payload, status=status)

    def _serve(self, request: rendering.Request) -> tuple[int, Any]:
        assert request.resource is not None
        if request.subresource not in (None, "status"):
            raise kmock.KubernetesNotFoundError(message=f"no subresource {request.subresource!r}")
        match request.action:
            case kmock.action.LIST:
                return 200, self._list(request)
            case kmock.action.FETCH:
                return 200, self._existing(request.resource, request.namespace, request.name).raw
            case kmock.action.CREATE:
                return 201, self._create(request.resource, request.namespace, request.data)
            case kmock.action.UPDATE:
                return 200, self._patch(request)
            case kmock.action.DELETE:
                return 200, self._delete(request.resource, request.namespace, request.name)
        raise kmock.KubernetesError(405, "MethodNotAllowed", f"{request.method} is not supported here")

    # -- storage -------------------------------------------------------------------------------------------
    def _existing(self, resource: kmock.resource, namespace: str | None, name: str | None) -> k8s_dicts.Object:
        obj = self._by_resource[resource].get((namespace, name or ""))
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError(message=f'{resource.plural} "{name}" not found')
        return obj

    def _store(self, resource: kmock.resource, namespace: str | None, name: str, body: dict[str, Any]) -> None:
        objs = self._by_resource[resource]
        obj = objs.get((namespace, name))
        if obj is None:
            obj = k8s_dicts.Object(body)
            objs[(namespace, name)] = obj
            self._objects._objects[(resource, namespace, name)] = obj
        elif self.keep_history:
            obj.history.append(body)
        else:
            obj.history[:] = [body]

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _create(self, resource: kmock.resource, namespace: str | None, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise kmock.KubernetesError(400, "BadRequest", "the body must be a JSON object")
        body = dict(data)  # freshly parsed from the request: nothing else holds it
        meta = body["metadata"] = dict(body.get("metadata") or {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            name = meta["name"] = meta["generateName"] + suffix
        if not name:
            raise kmock.KubernetesError(422, "Invalid", "metadata.name or metadata.generateName is required")
        namespace = namespace or meta.get("namespace")
        existing = self._by_resource[resource].get((namespace, name))
        if existing is not None and not existing.deleted:
            raise kmock.KubernetesError(409, "AlreadyExists", f'{resource.plural} "{name}" already exists')
        if namespace is not None:
            meta["namespace"] = namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, resourceVersion=self._bump())
        self._store(resource, namespace, name, body)
        self._emit(resource, "ADDED", body)
        return body

    def _patch(self, request: rendering.Request) -> dict[str, Any]:
        assert request.resource is not None and request.name is not None
        obj = self._existing(request.resource, request.namespace, request.name)
        old = obj.raw  # stored versions are never changed in place: patches build new dicts (copy on write)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == "application/json-patch+json":
            try:
                new = jsonpatch.apply_patch(old, request.data)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise kmock.KubernetesError(422, "Invalid", f"the JSON patch test failed: {exc}") from None
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise kmock.KubernetesError(422, "Invalid", f"the JSON patch cannot apply: {exc}") from None
        else:
            expected = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != old["metadata"].get("resourceVersion"):
                raise kmock.KubernetesError(
                    409, "Conflict", "the object has been modified; please apply your changes to the latest version"
                )
            new = merge_patch(old, request.data)
        return self._update(request.resource, obj, old, new, request.subresource)

    def _update(
        self,
        resource: kmock.resource,
        obj: k8s_dicts.Object,
        old: dict[str, Any],
        new: dict[str, Any],
        subresource: str | None,
    ) -> dict[str, Any]:
        if "status" in self.resources[resource].subresources:
            # With a status subresource, the main resource ignores status changes and /status the rest.
            rest = {k: v for k, v in (old if subresource == "status" else new).items() if k != "status"}
            status = (new if subresource == "status" else old).get("status")
            new = {**rest, "status": status} if status is not None else rest
        new = {**new, "metadata": dict(new.get("metadata") or {})}
        meta = new["metadata"]
        for fixed in ("name", "namespace", "uid", "creationTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
        if new == old:
            return old
        content = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
        meta["generation"] = old["metadata"].get("generation", 1) + (content(new) != content(old))
        meta["resourceVersion"] = self._bump()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(resource, obj, new)
        self._store(resource, meta.get("namespace"), meta["name"], new)
        self._emit(resource, "MODIFIED", new)
        return new

    def _delete(self, resource: kmock.resource, namespace: str | None, name: str | None) -> dict[str, Any]:
        obj = self._existing(resource, namespace, name)
        old = obj.raw
        if old["metadata"].get("deletionTimestamp"):
            return old
        if old["metadata"].get("finalizers"):
            new = {**old, "metadata": {**old["metadata"], "deletionTimestamp": _now()}}
            return self._update(resource, obj, old, new, None)
        last = {**old, "metadata": {**old["metadata"], "resourceVersion": self._bump()}}
        return self._remove(resource, obj, last)

    def _remove(self, resource: kmock.resource, obj: k8s_dicts.Object, last: dict[str, Any]) -> dict[str, Any]:
        if self.keep_history:
            obj.history.append(last)
            obj.delete()
        else:
            obj.history[:] = [last, None]
        self._emit(resource, "DELETED", last)
        return last

    # -- lists and watches ---------------------------------------------------------------------------------
    def _selected(self, request: rendering.Request, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        labels = request.params.get("labelSelector")
        fields = request.params.get("fieldSelector")
        return (not labels or label_matches(labels, meta.get("labels") or {})) and (
            not fields or field_matches(fields, obj)
        )

    def _list(self, request: rendering.Request) -> dict[str, Any]:
        assert request.resource is not None
        items = [o.raw for o in self._by_resource[request.resource].values() if not o.deleted]
        kind = self.resources[request.resource].kind or "Object"
        return {
            "apiVersion": f"{request.resource.group}/{request.resource.version}".lstrip("/"),
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": self.resource_version},
            "items": [o for o in items if self._selected(request, o)],
        }

    def _emit(self, resource: kmock.resource, type_: str, body: dict[str, Any]) -> None:
        event = {"type": type_, "object": body}
        log = self._log.setdefault(resource, collections.deque(maxlen=self.event_log_size))
        if len(log) == log.maxlen:
            self._evicted[resource] = log[0][0]
        log.append((self._rv, event))
        line = b""  # encoded once for every watcher
        for queue, request in self._watchers.get(resource, ()):
            if self._selected(request, body):
                line = line or json.dumps(event).encode() + b"\n"
                queue.put_nowait(line)

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        assert request.resource is not None and request._raw_request is not None
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        since = request.params.get("resourceVersion")
        # Snapshot and subscription in one synchronous step: no event can fall between them.
        if since in (None, "", "0"):
            backlog = [{"type": "ADDED", "object": o} for o in self._list(request)["items"]]
        else:
            log = self._log.get(request.resource, collections.deque())
            if not since.isdigit() or int(since) < self._evicted.get(request.resource, 0):
                backlog = [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]
            else:
                backlog = [e for rv, e in log if rv > int(since) and self._selected(request, e["object"])]
        watcher = (queue, request)
        self._watchers.setdefault(request.resource, set()).add(watcher)
        for event in backlog:
            queue.put_nowait(json.dumps(event).encode() + b"\n")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        try:
            await response.prepare(request._raw_request)
            async with asyncio.timeout(timeout):
                while True:
                    line = await queue.get()
                    await response.write(line)
                    if line.startswith(b'{"type": "ERROR"'):
                        break
        except (TimeoutError, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers[request.resource].discard(watcher)
        return response


def declare_kubernetes(emulator: Emulator, extra: Iterable[tuple[str, str, bool]] = ()) -> None:
    """The resources a sailvl operator meets: ours, Kubeflow's, the built-in ones, CRDs and namespaces."""
    for resource, kind, status in (
        ("sailvl.io/v1alpha1/trainstages", "TrainStage", True),
        ("sailvl.io/v1alpha1/curationruns", "CurationRun", True),
        ("sailvl.io/v1alpha1/evalsuites", "EvalSuite", True),
        ("kubeflow.org/v1/pytorchjobs", "PyTorchJob", True),
        ("trainer.kubeflow.org/v1alpha1/trainjobs", "TrainJob", True),
        ("apps/v1/deployments", "Deployment", True),
        ("batch/v1/jobs", "Job", True),
        ("v1/services", "Service", True),
        ("v1/configmaps", "ConfigMap", False),
        ("v1/pods", "Pod", True),
        ("v1/events", "Event", False),
        *extra,
    ):
        emulator.declare(resource, kind, status=status)
    emulator.declare("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", namespaced=False)
    emulator.declare("v1/namespaces", "Namespace", namespaced=False, status=True)
