"""A TrainStage on this machine: `torchrun -m sailvl.train` with the stage's processes on CPU, progress from rank
0's metrics, whole-gang restarts from the latest checkpoint as the operator does them."""

from __future__ import annotations

import json
import time
from functools import partial

from sailvl.api import conditions as c
from sailvl.api.meta import Resource
from sailvl.api.trainstage import (
    CheckpointStatus,
    JobRef,
    ResolvedInputs,
    TrainProgress,
    TrainStage,
    TrainStageStatus,
)
from sailvl.local.base import Failure, ResourceRun, cpu_count
from sailvl.local.procs import TORCHRUN, free_port
from sailvl.local.scrape import scrape

EXIT_INVALID, EXIT_LOSS_NOT_FINITE = 2, 3


def local_processes(stage: TrainStage) -> int:
    """The stage's processes when they fit this machine (one per core at most), else one: the trainer then
    accumulates more micro-batches, so the global batch and the numbers stay the same."""
    world = stage.spec.runtime.world_size
    return world if world <= cpu_count() else 1


class TrainRun(ResourceRun):
    resource: TrainStage

    async def execute(self, resolved: Resource) -> None:
        assert isinstance(resolved, TrainStage) and isinstance(self.status, TrainStageStatus)
        spec = resolved.spec
        self.status.resolved = ResolvedInputs(
            init=spec.model.init.uri if spec.model.init else None,
            data={entry.name: entry.source.describe() for entry in spec.data.mixture},
        )
        processes = local_processes(resolved)
        while True:
            attempt = self.status.restarts
            port = free_port()
            termination = self.state.folder / f"termination-a{attempt}.json"
            termination.unlink(missing_ok=True)
            self.local.endpoints["metrics"] = f"http://127.0.0.1:{port}/metrics"
            self.status.job = JobRef(kind="Local", name=f"{resolved.name}-train-a{attempt}", attempt=attempt)
            self.condition(c.RUNNING, "True", c.REASON_JOB_RUNNING, f"attempt {attempt}, {processes} process(es)")
            argv = [
                *TORCHRUN,
                "--standalone",
                "--nnodes=1",
                f"--nproc-per-node={processes}",
                "-m",
                "sailvl.train",
                "--spec",
                str(self.spec_file),
            ]
            child = await self.start(
                f"train-a{attempt}",
                argv,
                SAILVL_METRICS_PORT=str(port),
                SAILVL_TERMINATION_LOG=str(termination),
            )
            code = await self.wait(child, poll=partial(self.poll, port))
            await self.poll(port)
            if code == 0:
                self.finish(self.termination(termination))
                return
            if code == EXIT_INVALID:
                raise Failure(c.REASON_SPEC_INVALID, f"the trainer refused the spec (exit 2):\n{child.tail()}")
            if code == EXIT_LOSS_NOT_FINITE:
                raise Failure(c.REASON_LOSS_NOT_FINITE, f"the loss became non-finite (exit 3):\n{child.tail()}")
            if self.status.restarts >= spec.max_restarts:
                raise Failure(
                    c.REASON_RESTARTS_EXHAUSTED,
                    f"attempt {attempt} failed (exit {code}) after {self.status.restarts} restarts:\n{child.tail()}",
                )
            self.status.restarts += 1
            self.condition(c.RUNNING, "False", c.REASON_RESTARTING, f"attempt {attempt} exited {code}; restarting")

    async def poll(self, port: int) -> None:
        assert self.ctx.session is not None and isinstance(self.status, TrainStageStatus)
        values = await scrape(f"http://127.0.0.1:{port}/metrics", self.ctx.session)
        if "sailvl_train_step" not in values:
            return
        step, total = int(values["sailvl_train_step"]), values.get("sailvl_train_total_steps")
        loss = values.get("sailvl_train_loss")
        rate = values.get("sailvl_train_tokens_per_second")
        progress = TrainProgress(
            step=step,
            total_steps=int(total) if total else None,
            percent=round(100 * step / total, 1) if total else None,
            tokens=int(values.get("sailvl_train_tokens_total", 0)),
            loss=loss,
            tokens_per_second=rate,
        )
        previous = self.status.progress
        if step > 0 and (previous is None or previous.step != step):  # step 0: no loss measured yet
            with (self.state.folder / "progress.jsonl").open("a") as log:
                log.write(
                    json.dumps({"time": time.time(), "step": step, "loss": loss, "tokens": progress.tokens}) + "\n"
                )
        self.status.progress = progress
        self.live.done, self.live.total = step, total
        self.live.figure = f"loss {loss:.3f}" if loss is not None else ""
        self.save()

    def finish(self, message: dict[str, object]) -> None:
        assert isinstance(self.status, TrainStageStatus)
        final = message.get("checkpoint")
        if not isinstance(final, str):
            raise Failure(
                c.REASON_JOB_FAILED, "the trainer exited 0 but wrote no final checkpoint in its termination message"
            )
        self.status.checkpoint = CheckpointStatus(latest=final, final=final)
        # The trainer's own last word: a short stage may end between two scrapes of its metrics.
        progress = self.status.progress or TrainProgress()
        steps, tokens, loss = message.get("steps"), message.get("tokens"), message.get("loss")
        if isinstance(steps, int):
            progress.step = progress.total_steps = steps
        if isinstance(tokens, int):
            progress.tokens = tokens
        if isinstance(loss, int | float):
            progress.loss = float(loss)
        progress.percent = 100.0
        self.status.progress = progress
        self.live.figure = f"loss {progress.loss:.3f}" if progress.loss is not None else self.live.figure
        self.local.outputs["final"] = final

    def publish(self) -> None:
        final = self.local.outputs.get("final")
        if final:
            self.ctx.outputs.checkpoints[self.resource.name] = final
            assert isinstance(self.resource, TrainStage)
            self.ctx.outputs.precisions[self.resource.name] = self.resource.spec.precision
