"""Pod pieces every workload shares: restricted-profile security defaults, the user's `podTemplate` merged in,
and `pvc://` URIs turned into volumes, mounts and local paths.

The merge follows Kubernetes' strategic merge patch for the lists it knows (containers, env and volumes by
name, volume mounts by mount path, ports by container port): a `podTemplate` adds to or overrides what the
operator sets, item by item, and replaces everything else (scalars, tolerations, args).
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from sailvl.api.uris import scheme_of
from sailvl_operator.builders.meta import BuildError

# The uid/gid the sailvl images run as; fsGroup makes mounted claims writable by it.
RUN_AS = 10001  # images/sailvl and images/operator create this user
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

# Strategic-merge keys of the PodTemplateSpec lists (k8s.io/api core/v1 patchMergeKey tags).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}

PVC_ROOT = "/mnt/pvc"
SHM_VOLUME = "dshm"
TERMINATION_LOG = "/dev/termination-log"


def merge(base: Any, overlay: Any, key: str | None = None) -> Any:
    """`overlay` merged into a copy of `base` (strategic merge for the known lists; overlay wins otherwise)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, value in overlay.items():
            out[k] = merge(base[k], value, k) if k in base else copy.deepcopy(value)
        return out
    merge_key = MERGE_KEYS.get(key or "")
    if merge_key and isinstance(base, list) and isinstance(overlay, list) and _keyed(base + overlay, merge_key):
        out_list = [copy.deepcopy(item) for item in base]
        for item in overlay:
            at = next((i for i, b in enumerate(out_list) if b[merge_key] == item[merge_key]), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = merge(out_list[at], item)
        return out_list
    return copy.deepcopy(overlay)


def _keyed(items: list[Any], merge_key: str) -> bool:
    return all(isinstance(item, dict) and merge_key in item for item in items)


def template_fragment(pod_template: dict[str, Any] | None, field: str) -> dict[str, Any]:
    """A copy of a user's `podTemplate` (at manifest path `field`), checked to be a PodTemplateSpec fragment."""
    fragment = copy.deepcopy(pod_template or {})
    unknown = sorted(set(fragment) - {"metadata", "spec"})
    if unknown:
        raise BuildError(f"{field}.{unknown[0]}", "a PodTemplateSpec fragment has only metadata and spec")
    for key in ("metadata", "spec"):
        if not isinstance(fragment.get(key, {}), dict):
            raise BuildError(f"{field}.{key}", f"expected a mapping; found {fragment[key]!r}")
    return fragment


def pod_template(
    base: dict[str, Any], user: dict[str, Any] | None, field: str, *, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """`base` (metadata + spec) with the user's `podTemplate` merged in and the restricted defaults under it all.
    `labels` are reapplied last: a Deployment's or a Service's selector must keep matching its pods."""
    template: dict[str, Any] = merge(base, template_fragment(user, field))
    template["spec"] = restricted(template["spec"])
    if labels:
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), **labels}
    return template


def restricted(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """`pod_spec` with the restricted Pod Security profile's settings on the pod and on every container,
    under whatever the spec already sets (a `podTemplate` may override them, e.g. to run as another uid)."""
    out = dict(pod_spec)
    out["securityContext"] = merge(POD_SECURITY_CONTEXT, pod_spec.get("securityContext", {}))
    for key in ("containers", "initContainers"):
        if key in out:
            out[key] = [
                {**c, "securityContext": merge(CONTAINER_SECURITY_CONTEXT, c.get("securityContext", {}))}
                for c in out[key]
            ]
    return out


def shm_volume() -> dict[str, Any]:
    # Dataloader workers and NCCL pass tensors through /dev/shm, which a container gets only 64Mi of.
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}


def shm_mount() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "mountPath": "/dev/shm"}


def resources(cpu: int | str | None, memory: int | str | None, gpus: int) -> dict[str, Any]:
    """Requests equal to limits: a gang member that is throttled or evicted stalls the whole gang."""
    amounts: dict[str, Any] = {}
    if cpu is not None:
        amounts["cpu"] = str(cpu)
    if memory is not None:
        amounts["memory"] = str(memory)
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def claim_volume_name(claim: str) -> str:
    """A DNS-1123 label for a claim's volume; long or dotted claim names get a stable hash suffix."""
    simple = re.sub(r"[^a-z0-9-]", "-", claim)
    name = f"pvc-{simple}"
    if len(name) <= 63 and simple == claim:
        return name
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


@dataclass
class ClaimMounts:
    """The PersistentVolumeClaims a workload's URIs name, each mounted once under /mnt/pvc/<claim>."""

    writable: dict[str, bool] = field(default_factory=dict)

    def local(self, uri: str, *, write: bool = False) -> str:
        """The path a pod sees for `uri` (registering its claim); other schemes pass through unchanged."""
        if scheme_of(uri) != "pvc":
            return uri
        claim, _, path = uri[len("pvc://") :].partition("/")
        self.writable[claim] = self.writable.get(claim, False) or write
        return f"{PVC_ROOT}/{claim}" + (f"/{path}" if path else "")

    def uri(self, path: str) -> str:
        """The inverse of `local`: a path a pod reported, as the URI other workloads can mount."""
        for claim in self.writable:
            root = f"{PVC_ROOT}/{claim}"
            if path == root or path.startswith(root + "/"):
                return f"pvc://{claim}{path[len(root) :]}"
        return path

    def volumes(self) -> list[dict[str, Any]]:
        return [
            {
                "name": claim_volume_name(claim),
                "persistentVolumeClaim": {"claimName": claim, **({} if write else {"readOnly": True})},
            }
            for claim, write in sorted(self.writable.items())
        ]

    def mounts(self) -> list[dict[str, Any]]:
        return [
            {
                "name": claim_volume_name(claim),
                "mountPath": f"{PVC_ROOT}/{claim}",
                **({} if write else {"readOnly": True}),
            }
            for claim, write in sorted(self.writable.items())
        ]
