"""A CurationRun on this machine: a server per model, the workers side by side, then finalize."""

from __future__ import annotations

from typing import Any

from sailvl.api import conditions as c
from sailvl.api.curationrun import CurationOutputStatus, CurationProgress, CurationRun, CurationRunStatus
from sailvl.api.meta import Resource
from sailvl.local.base import Failure, ResourceRun
from sailvl.local.procs import SAILVL, free_port
from sailvl.local.scrape import scrape, scrape_labelled
from sailvl.local.serving import servings, start_servers

WORKER_RETRIES = 2  # as backoffLimitPerIndex: a crashed worker reruns; its finished shards are kept


class CurateRun(ResourceRun):
    async def execute(self, resolved: Resource) -> None:
        assert isinstance(resolved, CurationRun) and isinstance(self.status, CurationRunStatus)
        env = await start_servers(self, servings(resolved.spec.models))
        workers = resolved.spec.workers.parallelism
        self.ports = [free_port() for _ in range(workers)]
        self.condition(c.RUNNING, "True", c.REASON_JOB_RUNNING, f"{workers} worker(s)")
        results = [await self._worker(i, workers, env) for i in range(workers)] if workers == 1 else None
        if results is None:
            import asyncio

            results = list(await asyncio.gather(*(self._worker(i, workers, env) for i in range(workers))))
        await self.stop_children()  # the servers are not needed for finalize
        self.condition(c.MODELS_READY, "False", "ModelsStopped", "servers stopped after the workers finished")
        termination = self.state.folder / "termination-finalize.json"
        termination.unlink(missing_ok=True)
        child = await self.start(
            "finalize",
            [*SAILVL, "curate", "--spec", str(self.spec_file), "--finalize"],
            SAILVL_TERMINATION_LOG=str(termination),
        )
        code = await self.wait(child)
        if code != 0:
            raise Failure(c.REASON_JOB_FAILED, f"finalize exited {code}:\n{child.tail()}")
        self.finish(resolved, self.termination(termination), results)

    async def _worker(self, index: int, workers: int, env: dict[str, str]) -> dict[str, Any]:
        termination = self.state.folder / f"termination-worker-{index}.json"
        for attempt in range(WORKER_RETRIES + 1):
            termination.unlink(missing_ok=True)
            child = await self.start(
                f"worker-{index}",
                [*SAILVL, "curate", "--spec", str(self.spec_file), "--worker", str(index), "--workers", str(workers)],
                **env,
                JOB_COMPLETION_INDEX=str(index),
                SAILVL_METRICS_PORT=str(self.ports[index]),
                SAILVL_TERMINATION_LOG=str(termination),
            )
            code = await self.wait(child, poll=self.poll if index == 0 else None)
            if code == 0:
                return self.termination(termination)
            if code == 2 or attempt == WORKER_RETRIES:
                raise Failure(c.REASON_JOB_FAILED, f"worker {index} exited {code}:\n{child.tail()}")
        raise AssertionError("unreachable")

    async def poll(self) -> None:
        assert self.ctx.session is not None and isinstance(self.status, CurationRunStatus)
        totals = {"in": 0.0, "kept": 0.0, "shards": 0.0}
        dropped: dict[str, int] = {}
        for port in self.ports:
            url = f"http://127.0.0.1:{port}/metrics"
            values = await scrape(url, self.ctx.session)
            totals["shards"] += values.get("sailvl_curate_shards_done_total", 0.0)
            for labels, value in await scrape_labelled(url, self.ctx.session, "sailvl_curate_records_total"):
                totals["in"] += value
                if labels.get("outcome") == "kept":
                    totals["kept"] += value
                else:
                    key = labels.get("reason", "unknown")
                    dropped[key] = dropped.get(key, 0) + int(value)
        self.status.progress = CurationProgress(
            shards_done=int(totals["shards"]),
            samples_in=int(totals["in"]),
            samples_out=int(totals["kept"]),
            dropped=dropped,
        )
        self.live.done = totals["in"]
        self.live.figure = f"kept {totals['kept'] / totals['in']:.0%}" if totals["in"] else ""
        self.save()

    def finish(self, resolved: CurationRun, final: dict[str, Any], workers: list[dict[str, Any]]) -> None:
        assert isinstance(self.status, CurationRunStatus)
        if "samples" not in final:
            raise Failure(c.REASON_JOB_FAILED, "finalize exited 0 but wrote no counts in its termination message")
        dropped = {str(k): int(v) for k, v in dict(final.get("dropped", {})).items()}
        rejected = {str(k): int(v) for k, v in dict(final.get("rejected", {})).items()}
        shards_in = sum(int(w.get("shards", 0)) for w in workers)
        self.status.progress = CurationProgress(
            shards_done=shards_in,
            shards_total=shards_in,
            percent=100.0,
            samples_in=int(final.get("in", 0)),
            samples_out=int(final.get("kept", final["samples"])),
            dropped=dropped,
            rejected=rejected,
        )
        self.status.output = CurationOutputStatus(
            uri=resolved.spec.output.uri, shards=int(final.get("shards", 0)), samples=int(final["samples"])
        )
        self.local.outputs["dataset"] = resolved.spec.output.uri
        self.live.figure = f"{final['samples']} kept of {final.get('in', '?')}"

    def publish(self) -> None:
        dataset = self.local.outputs.get("dataset")
        if dataset:
            self.ctx.outputs.datasets[self.resource.name] = dataset
