"""What every local resource run shares: its state, its status transitions, its children and the live view."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sailvl.api import conditions as c
from sailvl.api.meta import Resource, ResourceStatus
from sailvl.local.backends import Backend
from sailvl.local.procs import Child
from sailvl.local.resolve import Outputs, resolve
from sailvl.local.state import State


@dataclass
class Live:
    """What the live view shows of one resource."""

    kind: str
    name: str
    phase: str = "Pending"
    done: float = 0.0
    total: float | None = None
    figure: str = ""  # loss, kept ratio, average ...
    message: str = ""


@dataclass
class RunContext:
    workdir: Path
    pvc_root: Path
    scale: float
    cores: int  # CPU cores shared by the children
    outputs: Outputs
    stop: asyncio.Event
    live: dict[tuple[str, str], Live] = field(default_factory=dict)
    busy: int = 0  # resources running now
    session: aiohttp.ClientSession | None = None
    backend: Backend = field(default_factory=lambda: Backend("sailvl"))
    """The model server every Serving is started with."""


class Stopped(Exception):
    """The user interrupted the run; the resource resumes next time."""


class ResourceRun:
    """One resource's run. Subclasses implement `execute`, which returns normally on success and raises
    `Failure` (with a reason) on failure."""

    def __init__(self, resource: Resource, ctx: RunContext) -> None:
        self.resource, self.ctx = resource, ctx
        self.state = State(ctx.workdir, resource.kind, resource.name)
        self.status, self.local = self.state.load()
        self.children: list[Child] = []
        self.live = ctx.live.setdefault((resource.kind, resource.name), Live(resource.kind, resource.name))
        self.live.phase = self.status.phase or "Pending"
        self.resolved: Resource | None = None

    # --- status ------------------------------------------------------------------------------------------

    def condition(self, type_: str, status: c.ConditionStatus, reason: str, message: str = "") -> None:
        self.status.conditions = c.set_condition(self.status.conditions, type_, status, reason, message)
        self.status.phase = c.derive_phase(self.status.conditions)
        self.status.message = message or self.status.message
        self.live.phase, self.live.message = self.status.phase, message
        self.save()

    def save(self) -> None:
        self.state.save(self.status, self.local)

    @property
    def succeeded(self) -> bool:
        return c.is_true(self.status.conditions, c.SUCCEEDED)

    def digest(self, resolved: Resource) -> str:
        return hashlib.sha256(json.dumps(resolved.to_manifest()["spec"], sort_keys=True).encode()).hexdigest()

    # --- the run -----------------------------------------------------------------------------------------

    def prepare(self) -> Resource:
        """Resolve references against what has finished; write the spec the processes read."""
        self.resolved = resolve(self.resource, self.ctx.outputs, pvc_root=self.ctx.pvc_root, scale=self.ctx.scale)
        spec_file = self.state.folder / "spec.json"
        self.state.folder.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps(self.resolved.to_manifest(), indent=2))
        return self.resolved

    @property
    def spec_file(self) -> Path:
        return self.state.folder / "spec.json"

    async def run(self) -> bool:
        resolved = self.prepare()
        digest = self.digest(resolved)
        if self.succeeded and self.local.spec_digest == digest:
            self.publish()
            self.live.phase = "Succeeded"
            return True
        if self.succeeded:  # it ran with another spec: its outputs would not match this one
            self.status.conditions = [x for x in self.status.conditions if x.type != c.SUCCEEDED]
        self.local.spec_digest = digest
        self.status.conditions = [x for x in self.status.conditions if x.type != c.FAILED]
        self.condition(c.VALID, "True", c.REASON_SPEC_VALID)
        self.condition(c.DEPENDENCIES_READY, "True", c.REASON_DEPENDENCIES_SUCCEEDED)
        self.status.start_time = self.status.start_time or c.now_rfc3339()
        started = time.monotonic()
        try:
            await self.execute(resolved)
        except Stopped:
            self.condition(c.RUNNING, "False", "Interrupted", "stopped by the user; `sailvl run` again resumes")
            return False
        except Failure as failure:
            self.condition(c.RUNNING, "False", failure.reason, str(failure))
            self.condition(c.FAILED, "True", failure.reason, str(failure))
            self.status.completion_time = c.now_rfc3339()
            self.save()
            return False
        finally:
            await self.stop_children()
            self.local.seconds = time.monotonic() - started
            self.save()
        self.condition(c.RUNNING, "False", c.REASON_COMPLETED)
        self.status.completion_time = c.now_rfc3339()
        self.condition(c.SUCCEEDED, "True", c.REASON_COMPLETED, "done")
        self.publish()
        return True

    async def execute(self, resolved: Resource) -> None:
        raise NotImplementedError

    def publish(self) -> None:
        """Make this resource's outputs visible to the resources that depend on it."""

    # --- children ----------------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        # Split the cores between the resources running when this child starts: a stage alone on the critical path
        # gets them all, two side by side share them.
        threads = str(max(1, self.ctx.cores // max(1, self.ctx.busy)))
        return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1", **extra}

    async def start(self, name: str, argv: list[str], **env: str) -> Child:
        child = await Child(name, argv, self.env(**env), self.state.log(name)).start()
        self.children.append(child)
        return child

    async def wait(self, child: Child, poll: Any = None, every: float = 1.0) -> int:
        """Wait for `child`, calling `poll()` every `every` seconds; raise Stopped when the user interrupts."""
        waiter = asyncio.ensure_future(child.wait())
        stopper = asyncio.ensure_future(self.ctx.stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait({waiter, stopper}, timeout=every, return_when=asyncio.FIRST_COMPLETED)
                if poll is not None:
                    await poll()
                if stopper in done:
                    raise Stopped
                if waiter in done:
                    return waiter.result()
        finally:
            stopper.cancel()

    async def stop_children(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.children))
        self.children.clear()

    def termination(self, path: Path) -> dict[str, Any]:
        if not path.exists():
            return {}
        try:
            message = json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}
        return message if isinstance(message, dict) else {}


class Failure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def status_of(run: ResourceRun) -> ResourceStatus:
    return run.status
