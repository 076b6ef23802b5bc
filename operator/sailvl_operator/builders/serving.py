"""vLLM servers: one Deployment and one ClusterIP Service per served model, and the URLs workers reach them at.

A model is served from where it lives: a `pvc://` claim mounted read-only, `s3://` or `gs://` streamed straight
to the GPUs (vLLM's `--load-format runai_streamer`), `hf://org/repo` downloaded by vLLM, or a path inside the
image; a model that names a TrainStage is that stage's final checkpoint. `gpusPerReplica: 0` serves with
`sailvl serve`, the CPU stand-in for vLLM, which loads a local folder.

Every server gets `--dtype` explicitly (`served_dtype`): a checkpoint a stage exported is served in the stage's
precision, as it is stored and as the local runner serves it; vLLM's own `auto` would serve a float32 export in
bfloat16. The model under evaluation is told the most tiles any of the suite's benchmarks asks for
(`--mm-processor-kwargs`, so vLLM sizes its encoder cache for them) and takes each request's own
(`--trust-request-mm-kwargs`: the eval workers send `mm_processor_kwargs.max_patches` per benchmark).

The pods are probed the way vLLM comes up: a startupProbe on `/health` gives the weights time to load (no long
initialDelay), readiness on `/v1/models` (the server answers requests), liveness on `/health`. The port is named
`http`; the labels let a PodMonitor select every server and name its resource.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sailvl.api import CurationRun, EvalSuite, ModelRef, Resource, ServingRuntime
from sailvl.api.serving import served_dtype, stand_in_arguments, vllm_arguments
from sailvl.api.uris import scheme_of
from sailvl_operator.builders.meta import (
    COMPONENT_LABEL,
    MODEL_LABEL,
    QUEUE_LABEL,
    BuildError,
    child_labels,
    child_metadata,
    selector_labels,
    vllm_name,
)
from sailvl_operator.builders.pods import ClaimMounts, pod_template, resources, shm_mount, shm_volume
from sailvl_operator.builders.train import BuildContext

VLLM = "vllm"  # the component label and the container's name
HTTP_PORT = 8000
PROBE_PERIOD = 10
MODEL_URL_PREFIX = "SAILVL_MODEL_URL_"
STREAMED = ("s3", "gs")  # what the Run:ai model streamer reads without a local copy


@dataclass(frozen=True)
class Server:
    """One served model of a resource."""

    slot: str
    """Suffix of its Deployment and Service and of SAILVL_MODEL_URL_<SLOT>: a CurationRun model's name, or `model`
    and `judge` in an EvalSuite."""
    served_name: str
    """The model name requests use (`--served-model-name`)."""
    model: ModelRef
    runtime: ServingRuntime
    field: str
    """Where it is declared in the manifest, for errors: spec.models[0], spec.serving, spec.judge."""
    model_field: str
    """Where its model is declared: spec.models[0].model, spec.model, spec.judge.model."""


def servers_of(resource: Resource) -> list[Server]:
    """The models `resource` serves, in declaration order."""
    if isinstance(resource, CurationRun):
        return [
            Server(s.name, s.name, s.model, s, f"spec.models[{i}]", f"spec.models[{i}].model")
            for i, s in enumerate(resource.spec.models)
        ]
    assert isinstance(resource, EvalSuite), f"{resource.kind} serves no models"
    spec = resource.spec
    servers = [Server("model", "model", spec.model, spec.serving, "spec.serving", "spec.model")]
    if spec.judge is not None:
        servers.append(Server("judge", spec.judge.name, spec.judge.model, spec.judge, "spec.judge", "spec.judge.model"))
    return servers


def model_env_name(slot: str) -> str:
    """DESIGN §4: SAILVL_MODEL_URL_<NAME>, upper-cased, `-` → `_`."""
    return MODEL_URL_PREFIX + slot.upper().replace("-", "_")


def model_url(owner: Resource, slot: str) -> str:
    """The OpenAI base URL of a served model, through its Service."""
    name = vllm_name(owner.name, slot)
    host = f"{name}.{owner.namespace}.svc" if owner.namespace else name
    return f"http://{host}:{HTTP_PORT}/v1"


def model_env(owner: Resource) -> list[dict[str, str]]:
    return [{"name": model_env_name(s.slot), "value": model_url(owner, s.slot)} for s in servers_of(owner)]


def resolved_model(server: Server, ctx: BuildContext) -> str:
    """The URI of the model: its own, or the final checkpoint of the stage it names."""
    if server.model.uri is not None:
        return server.model.uri
    stage = server.model.stage
    assert stage is not None
    if stage not in ctx.model_uris:
        raise BuildError(f"{server.model_field}.stage", f"TrainStage/{stage} has no final checkpoint yet")
    return ctx.model_uris[stage]


def model_argument(server: Server, uri: str, claims: ClaimMounts) -> tuple[str, list[str]]:
    """(what the server loads, arguments that say how) for a model at `uri`."""
    scheme = scheme_of(uri)
    cpu = server.runtime.gpus_per_replica == 0
    where = server.model_field
    if scheme == "synthetic":
        raise BuildError(where, f"synthetic:// generates data, not models; found {uri!r}")
    if cpu and scheme not in ("pvc", "file"):
        raise BuildError(
            where,
            "gpusPerReplica 0 serves with `sailvl serve`, which loads a local folder: use a pvc:// URI or a path "
            f"(or give the model GPUs to serve it with vLLM); found {uri!r}",
        )
    if scheme == "pvc":
        return claims.local(uri), []
    if scheme == "file":
        return (uri[len("file://") :] if uri.startswith("file://") else uri), []
    if scheme == "hf":
        repo = uri[len("hf://") :].strip("/")
        if repo.count("/") != 1:
            raise BuildError(where, f"vLLM serves a whole Hugging Face repository (hf://org/repo); found {uri!r}")
        return repo, []
    assert scheme in STREAMED, scheme
    chosen = any(a == "--load-format" or a.startswith("--load-format=") for a in server.runtime.extra_args)
    return uri, [] if chosen else ["--load-format", "runai_streamer"]


def server_dtype(server: Server, ctx: BuildContext) -> str:
    """The `--dtype` of a server: asked for, else the precision its stage exported in, else vLLM's `auto`."""
    stage = server.model.stage
    return served_dtype(server.runtime, ctx.model_precisions.get(stage) if stage is not None else None)


def server_command(server: Server, model: str, how: list[str], *, dtype: str, tiles: int | None) -> list[str]:
    """The server's argv; `tiles` is the most tiles per image its requests may ask for (None: the checkpoint's)."""
    runtime = server.runtime
    listen = ["--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    if runtime.gpus_per_replica == 0:
        if runtime.extra_args:
            raise BuildError(
                f"{server.field}.extraArgs",
                "extraArgs are vLLM arguments; gpusPerReplica 0 serves with `sailvl serve`, which takes none",
            )
        engine = stand_in_arguments(runtime, dtype=dtype, tiles=tiles)
        return ["sailvl", "serve", "--model", model, "--served-model-name", server.served_name, *listen, *engine]
    engine = vllm_arguments(runtime, dtype=dtype, tiles=tiles, load=tuple(how))
    return ["vllm", "serve", model, "--served-model-name", server.served_name, *listen, *engine]


def server_tiles(server: Server, owner: Resource) -> int | None:
    """The most tiles per image the requests to `server` ask for: the evaluated model's suite sets them."""
    if isinstance(owner, EvalSuite) and server.slot == "model":
        return owner.spec.most_tiles()
    return None


def server_labels(owner: Resource, server: Server) -> dict[str, str]:
    """The labels that select one model's pods (the Deployment's selector and the Service's)."""
    return {**selector_labels(owner), COMPONENT_LABEL: VLLM, MODEL_LABEL: server.slot}


def _probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def server_container(server: Server, ctx: BuildContext, command: list[str], claims: ClaimMounts) -> dict[str, Any]:
    runtime = server.runtime
    default_image = ctx.settings.image if runtime.gpus_per_replica == 0 else ctx.settings.serving_image
    startup_failures = max(1, math.ceil(ctx.settings.vllm_startup_timeout / PROBE_PERIOD))
    return {
        "name": VLLM,
        "image": runtime.image or default_image,
        "command": command,
        "env": [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": resources(runtime.cpu, runtime.memory, runtime.gpus_per_replica),
        "volumeMounts": [shm_mount(), *claims.mounts()],
        # Loading weights takes minutes: the startup probe holds off liveness until /health answers.
        "startupProbe": _probe("/health", PROBE_PERIOD, startup_failures, 5),
        "readinessProbe": _probe("/v1/models", PROBE_PERIOD, 3, 5),
        "livenessProbe": _probe("/health", 20, 3, 10),
        # A crash's log tail lands in the pod status, where the operator reads it into ModelsReady.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def build_vllm_deployment(server: Server, owner: Resource, ctx: BuildContext) -> dict[str, Any]:
    """The Deployment of one served model: `replicas` pods of vLLM (or `sailvl serve` on CPU)."""
    runtime = server.runtime
    if runtime.active_deadline_seconds is not None:
        raise BuildError(
            f"{server.field}.activeDeadlineSeconds",
            "a model server runs as long as its resource needs it; the deadline applies to workers only",
        )
    claims = ClaimMounts()
    model, how = model_argument(server, resolved_model(server, ctx), claims)
    command = server_command(server, model, how, dtype=server_dtype(server, ctx), tiles=server_tiles(server, owner))
    container = server_container(server, ctx, command, claims)
    labels = server_labels(owner, server)
    extra = {COMPONENT_LABEL: VLLM, MODEL_LABEL: server.slot}
    if runtime.queue:
        extra[QUEUE_LABEL] = runtime.queue
    base = {
        "metadata": {"labels": child_labels(owner, extra)},
        "spec": {"containers": [container], "volumes": [shm_volume(), *claims.volumes()]},
    }
    template = pod_template(base, runtime.pod_template, f"{server.field}.podTemplate", labels=labels)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, vllm_name(owner.name, server.slot), labels=extra),
        "spec": {
            "replicas": runtime.replicas,
            "selector": {"matchLabels": labels},
            # No surge: a rollout must not wait for GPUs that the old replicas hold.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": template,
        },
    }


def build_vllm_service(server: Server, owner: Resource, ctx: BuildContext) -> dict[str, Any]:
    """The ClusterIP Service the workers reach a served model through (SAILVL_MODEL_URL_<SLOT>)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(
            owner, vllm_name(owner.name, server.slot), labels={COMPONENT_LABEL: VLLM, MODEL_LABEL: server.slot}
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": server_labels(owner, server),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_servers(owner: Resource, ctx: BuildContext) -> list[dict[str, Any]]:
    """Every model's Deployment and Service, in declaration order."""
    out: list[dict[str, Any]] = []
    for server in servers_of(owner):
        out += [build_vllm_deployment(server, owner, ctx), build_vllm_service(server, owner, ctx)]
    return out
