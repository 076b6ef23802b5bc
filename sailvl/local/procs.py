"""Child processes of a local run: started in their own process group with a log file, stopped cleanly.

Ctrl-C reaches only the runner (children get their own session), which then stops every child: SIGTERM to its
group, SIGKILL after a grace period. If the runner itself is killed, Linux sends each child SIGTERM (the parent
death signal), so no orphan keeps writing checkpoints that a rerun would then race with.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SAILVL = (sys.executable, "-m", "sailvl")
TORCHRUN = (sys.executable, "-m", "torch.distributed.run")


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the runner dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A port nothing listens on now (the OS picks it); recorded in the resource's state."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One process with its log; `wait()` returns its exit code."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, list(argv), dict(env), log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n$ {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def wait(self) -> int:
        assert self.process is not None, "start() first"
        return await self.process.wait()

    async def stop(self, grace: float = 15.0) -> None:
        if not self.running:
            return
        assert self.process is not None
        for sig, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
                return
            except TimeoutError:
                continue

    def tail(self, lines: int = 15) -> str:
        """The end of the log, for error messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def wait_healthy(url: str, child: Child, timeout: float) -> None:
    """Wait until `url` answers 200, the child dies, or `timeout` passes."""
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if not child.running:
                raise ChildFailed(child, f"{child.name} exited before it was ready")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise ChildFailed(child, f"{child.name} was not ready after {timeout:.0f} s")
            await asyncio.sleep(0.5)


class ChildFailed(RuntimeError):
    def __init__(self, child: Child, message: str) -> None:
        super().__init__(f"{message}; the end of {child.log}:\n{child.tail()}")
        self.child = child
