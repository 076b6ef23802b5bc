"""Model servers for a local run: `sailvl serve` per Serving, on a free port, waited for until healthy."""

from __future__ import annotations

from sailvl.api import conditions as c
from sailvl.api.common import Serving, ServingRuntime
from sailvl.local.base import Failure, ResourceRun
from sailvl.local.procs import SAILVL, ChildFailed, free_port, wait_healthy

STARTUP_SECONDS = 300.0


def url_variable(name: str) -> str:
    """The variable a worker finds a model in (DESIGN §4): SAILVL_MODEL_URL_<NAME>, `-` → `_`."""
    return "SAILVL_MODEL_URL_" + name.upper().replace("-", "_")


async def start_servers(run: ResourceRun, servers: list[tuple[str, str, str, ServingRuntime]]) -> dict[str, str]:
    """Start (variable name, served name, model folder, serving) servers; returns the environment that points the
    workers at them (SAILVL_MODEL_URL_<variable name>)."""
    env: dict[str, str] = {}
    children = []
    run.condition(c.MODELS_READY, "False", c.REASON_MODELS_STARTING, f"starting {len(servers)} server(s)")
    for variable, name, folder, serving in servers:
        port = free_port()
        argv = [*SAILVL, "serve", "--model", folder, "--port", str(port), "--served-model-name", name]
        if serving.max_model_len:
            argv += ["--max-model-len", str(serving.max_model_len)]
        child = await run.start(f"serve-{name}", argv)
        children.append((variable, name, port, child))
        run.local.endpoints[f"serve-{name}"] = f"http://127.0.0.1:{port}/v1"
    for variable, _, port, child in children:
        try:
            await wait_healthy(f"http://127.0.0.1:{port}/health", child, STARTUP_SECONDS)
        except ChildFailed as err:
            raise Failure("ModelNotReady", str(err)) from None
        env[url_variable(variable)] = f"http://127.0.0.1:{port}/v1"
    run.condition(c.MODELS_READY, "True", c.REASON_MODELS_AVAILABLE, ", ".join(name for _, name, _, _ in servers))
    return env


def servings(models: list[Serving]) -> list[tuple[str, str, str, ServingRuntime]]:
    out: list[tuple[str, str, str, ServingRuntime]] = []
    for serving in models:
        assert serving.model.uri is not None, "references are resolved before a run"
        out.append((serving.name, serving.name, serving.model.uri, serving))
    return out
