"""Fixtures of the operator tests: the Kubernetes emulator on a real HTTP port, a kubeconfig that points at
it, a client for the test's own reads and writes, and the operator (kopf) running in its own thread and
event loop, as it runs in its pod."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
import yaml

from sailvl_operator.handlers import build_registry
from sailvl_operator.main import run_operator
from sailvl_operator.metrics import OperatorMetrics
from sailvl_operator.settings import Settings
from tests.operator.emulator import Emulator, declare_kubernetes

NAMESPACE = "lab"
FAST = Settings(
    timer_interval=0.5,
    progress_interval=0.5,
    scrape_timeout=1.0,
    watch_inactivity_timeout=20.0,
    metrics_port=0,
    health_port=0,
    peering="",
    image="sailvl/sailvl:test",
)

PLURALS = {
    "TrainStage": "sailvl.io/v1alpha1/trainstages",
    "CurationRun": "sailvl.io/v1alpha1/curationruns",
    "EvalSuite": "sailvl.io/v1alpha1/evalsuites",
    "Deployment": "apps/v1/deployments",
    "Service": "v1/services",
    "Job": "batch/v1/jobs",
    "PyTorchJob": "kubeflow.org/v1/pytorchjobs",
    "TrainJob": "trainer.kubeflow.org/v1alpha1/trainjobs",
    "ConfigMap": "v1/configmaps",
    "Pod": "v1/pods",
    "Event": "v1/events",
}


def api_path(kind: str, namespace: str | None = NAMESPACE, name: str | None = None, sub: str | None = None) -> str:
    plural = PLURALS[kind]
    base = f"/api/{plural}" if plural.startswith("v1/") else f"/apis/{plural}"
    group_version, _, resource = base.rpartition("/")
    path = f"{group_version}/namespaces/{namespace}/{resource}" if namespace else base
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


class Kube:
    """What a user with kubectl (or a Kubeflow controller) does, over HTTP to the emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def _call(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        rsp = await self.emulator.request(method, path, json=body, headers={"Content-Type": ctype})
        payload = await rsp.json()
        assert rsp.status < 400, f"{method} {path}: {rsp.status} {payload.get('message')}"
        return payload

    async def create(self, obj: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
        return await self._call("POST", api_path(obj["kind"], namespace), copy.deepcopy(obj))  # type: ignore[no-any-return]

    async def patch(self, kind: str, name: str, patch: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        path = api_path(kind, NAMESPACE, name, "status" if status else None)
        return await self._call("PATCH", path, patch, "application/merge-patch+json")  # type: ignore[no-any-return]

    async def delete(self, kind: str, name: str) -> None:
        await self._call("DELETE", api_path(kind, NAMESPACE, name))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.emulator.get(PLURALS[kind], NAMESPACE, name)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return self.emulator.all(PLURALS[kind], NAMESPACE)

    def names(self, kind: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.all(kind))

    def condition(self, name: str, type_: str, kind: str = "TrainStage") -> dict[str, Any]:
        resource = self.get(kind, name) or {}
        conditions = (resource.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.all("Event") if e["involvedObject"]["name"] == name]


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def settle(seconds: float) -> None:
    """Let the operator run for a while (to show that something does NOT happen)."""
    await asyncio.sleep(seconds)


@pytest_asyncio.fixture()
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator()
    declare_kubernetes(emu)
    async with emu, kmock.Server(emu):
        yield emu


@pytest.fixture()
def kube(emulator: Emulator) -> Kube:
    return Kube(emulator)


@pytest.fixture()
def kubeconfig(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for the emulator; the operator logs in with it, as it would outside a cluster."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(emulator.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": NAMESPACE}}
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


class OperatorThread:
    """The operator in its own thread and event loop; start and stop it as a pod would be."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = OperatorMetrics()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._metrics_server: Any = None
        self.errors: list[BaseException] = []

    async def start(self) -> None:
        registry, self.controller = build_registry(self.settings, self.metrics)
        self._stop, ready = threading.Event(), threading.Event()
        if self.settings.metrics_port and self._metrics_server is None:
            self._metrics_server = self.metrics.serve(self.settings.metrics_port, addr="127.0.0.1")

        def target() -> None:
            try:
                asyncio.run(run_operator(self.settings, registry, stop_flag=self._stop, ready_flag=ready))
            except BaseException as exc:  # surfaced by the test that owns the thread
                self.errors.append(exc)

        self._thread = threading.Thread(target=target, name="kopf", daemon=True)
        self._thread.start()
        assert await asyncio.to_thread(ready.wait, 20), "the operator did not get ready in 20s"

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 30)
        assert not self._thread.is_alive(), "the operator did not stop in 30s"
        self._thread = None
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        assert not self.errors, f"the operator crashed: {self.errors!r}"


@pytest_asyncio.fixture()
async def operator_factory(kubeconfig: Path) -> AsyncIterator[Callable[..., Awaitable[OperatorThread]]]:
    started: list[OperatorThread] = []

    async def start(**overrides: Any) -> OperatorThread:
        op = OperatorThread(dataclasses.replace(FAST, **overrides))
        await op.start()
        started.append(op)
        return op

    yield start
    for op in started:
        await op.stop()


@pytest_asyncio.fixture()
async def operator(operator_factory: Callable[..., Awaitable[OperatorThread]]) -> OperatorThread:
    return await operator_factory()
