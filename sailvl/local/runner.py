"""`sailvl run`: validate, order, and run every resource; independent branches side by side; resumable."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from sailvl.api import conditions as c
from sailvl.api.validation import report, validate_paths
from sailvl.local.backends import Backend
from sailvl.local.base import ResourceRun, RunContext, cpu_count
from sailvl.local.curate import CurateRun
from sailvl.local.evaluate import EvalRun
from sailvl.local.graph import Graph, GraphError, build_graph
from sailvl.local.resolve import Outputs
from sailvl.local.train import TrainRun
from sailvl.local.view import LiveView

RUNS: dict[str, type[ResourceRun]] = {"TrainStage": TrainRun, "CurationRun": CurateRun, "EvalSuite": EvalRun}
EXIT_INVALID = 2


def run(
    paths: Sequence[str],
    *,
    workdir: Path,
    pvc_root: Path | None,
    scale: float,
    jobs: int,
    backend: Backend | None = None,
) -> int:
    """Run the manifests under `paths`; 0 when everything Succeeded, 1 when something failed or was stopped,
    2 when the manifests are invalid."""
    result = validate_paths(paths)
    if not result.ok:
        print(report(result), file=sys.stderr)
        return EXIT_INVALID
    try:
        graph = build_graph(result.resources)
    except GraphError as err:
        print(f"sailvl run: {err}", file=sys.stderr)
        return EXIT_INVALID
    if scale <= 0:
        print(f"sailvl run: --scale must be positive; found {scale}", file=sys.stderr)
        return EXIT_INVALID
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        workdir=workdir,
        pvc_root=(pvc_root or workdir / "pvc").resolve(),
        scale=scale,
        cores=cpu_count(),
        outputs=Outputs(checkpoints={}, datasets={}),
        stop=asyncio.Event(),
        backend=backend or Backend("sailvl"),
    )
    return asyncio.run(_run_graph(graph, ctx, jobs))


async def _run_graph(graph: Graph, ctx: RunContext, jobs: int) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, ctx.stop.set)
    order = graph.order()
    runs = {key: RUNS[key[0]](graph.resources[key], ctx) for key in order}
    finished = {key: asyncio.Event() for key in order}
    ok: dict[tuple[str, str], bool] = {}
    slots = asyncio.Semaphore(max(1, jobs))

    async def one(key: tuple[str, str]) -> None:
        try:
            for need in graph.needs[key]:
                await finished[need].wait()
            failed = [f"{k}/{n}" for k, n in graph.needs[key] if not ok[(k, n)]]
            if failed:
                reason = c.REASON_DEPENDENCY_FAILED if not ctx.stop.is_set() else "Interrupted"
                runs[key].condition(c.DEPENDENCIES_READY, "False", reason, f"{', '.join(failed)} did not succeed")
                ok[key] = False
                return
            if ctx.stop.is_set():
                ok[key] = False
                return
            async with slots:
                ctx.busy += 1
                try:
                    ok[key] = await runs[key].run() if not ctx.stop.is_set() else False
                except Exception as err:  # a bug or an unreadable input must not take the other branches down
                    runs[key].condition(c.FAILED, "True", "RunnerError", f"{type(err).__name__}: {err}")
                    ok[key] = False
                finally:
                    ctx.busy -= 1
        finally:
            finished[key].set()

    view = LiveView(ctx.live, order)
    async with aiohttp.ClientSession() as session:
        ctx.session = session
        with view:
            refresher = asyncio.ensure_future(view.refresh_forever())
            try:
                await asyncio.gather(*(one(key) for key in order))
            finally:
                refresher.cancel()
    view.summary(runs)
    if ctx.stop.is_set():
        print("stopped; run the same command again to resume", file=sys.stderr)
    return 0 if all(ok.values()) else 1
