"""The stage trainer as a story: set up, load, loop, save.

Set up: the process group, the model the spec starts from (frozen per `trainable`), the engine around it, the
data stream. Load: the latest complete checkpoint, if a previous attempt left one. Loop: one optimizer step at a
time until the budget is spent, reporting each step and checkpointing every `intervalSteps`. Save: a last step
checkpoint, the exported `final/` model and the result for the operator.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sailvl.api.common import EXPORT_DTYPES
from sailvl.api.trainstage import TrainStage, TrainStageSpec
from sailvl.api.uris import scheme_of
from sailvl.data.uris import resolve_uri
from sailvl.model.build import build_model
from sailvl.model.checkpoint import BuiltModel
from sailvl.model.components import set_trainable
from sailvl.model.export_check import ExportCheckError
from sailvl.train.checkpoint import CheckpointStore
from sailvl.train.data import Prefetcher, StageData, StepBatch
from sailvl.train.distributed import Distributed, init_distributed
from sailvl.train.engines import Engine, build_engine
from sailvl.train.export import FINAL, export_final
from sailvl.train.flops import ModelShapes, peak_flops
from sailvl.train.reporting import ProgressLog, StepReport, TrainerMetrics
from sailvl.train.schedule import BudgetMeter, Counters, LrSchedule
from sailvl.train.settings import SpecError, TrainerSettings
from sailvl.train.step import StepTotals, train_step

log = logging.getLogger(__name__)
LOG_EVERY = 10


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What the stage produced; `termination_message()` is what the operator reads."""

    checkpoint: str
    steps: int
    samples: int
    tokens: int
    loss: float | None

    def termination_message(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "steps": self.steps, "tokens": self.tokens, "loss": self.loss}


@dataclass
class Run:
    """Everything set up for one stage on one rank."""

    stage: TrainStage
    dist: Distributed
    engine: Engine
    data: StageData
    store: CheckpointStore
    meter: BudgetMeter
    schedule: LrSchedule
    shapes: ModelShapes
    built: BuiltModel
    root: Path
    accumulation: int
    bf16: bool
    document: dict[str, Any]
    saved_step: int = -1
    """The step of the newest checkpoint this run wrote or resumed from."""


def train(stage: TrainStage, settings: TrainerSettings) -> TrainResult:
    """Run `stage` to the end of its budget (resuming if a checkpoint exists); every rank calls this."""
    dist = init_distributed(gpus=stage.spec.runtime.gpus_per_node > 0)
    metrics = TrainerMetrics(settings.metrics_port) if dist.is_main else None
    try:
        run = set_up(stage, settings, dist)
        counters, loss = load(run)
        counters, loss, data_state = loop(run, counters, loss, metrics)
        return save(run, counters, loss, data_state)
    finally:
        if metrics is not None:
            metrics.close()
        dist.close()


def set_up(stage: TrainStage, settings: TrainerSettings, dist: Distributed) -> Run:
    spec = stage.spec
    try:
        accumulation = gradient_accumulation(spec, dist.world_size)
        root = checkpoint_root(spec.checkpoint.uri, settings.pvc_root)
        init_uri = resolve_init(spec, settings)
        bf16 = dist.device.type == "cuda" and spec.precision == "bf16"
        if spec.precision == "bf16" and not bf16:
            log.info("precision bf16 applies on GPUs; this CPU run computes in fp32")
        seed_everything(spec.seed, dist.rank)
        built = build_model(spec.model, init_uri=init_uri, pvc_root=settings.pvc_root, seed=spec.seed)
        counts = set_trainable(built.model, spec.trainable)
        log.info("model %s: %s trainable parameters %s", built.source, counts["total"], counts)
        if spec.parallelism.gradient_checkpointing:
            model: Any = built.model  # transformers leaves this method untyped
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        shapes = ModelShapes.of(built.model, spec.trainable)
        # On a GPU transformers builds the packed-sequence mask from the position ids itself; the explicit
        # (rows, 1, L, L) float mask is for CPU attention.
        on_gpu = dist.device.type == "cuda"
        data = StageData(
            spec, built, rank=dist.rank, world_size=dist.world_size, pvc_root=settings.pvc_root, block_mask=not on_gpu
        )
        engine = build_engine(spec, built.model, dist, bf16=bf16)
    except SpecError:
        raise
    except ValueError as exc:  # a spec, checkpoint or data source that cannot work: retrying will not help
        raise SpecError(f"TrainStage/{stage.name}: {exc}") from exc
    meter = BudgetMeter(
        budget=spec.budget, rows=data.rows, global_batch=spec.batch.global_size, packing=spec.data.packing
    )
    log.info(
        "stage %s: engine %s, %d process(es) on %s, global batch %d = micro %d x accumulation %d x %d, budget %s %s",
        stage.name, engine.name, dist.world_size, dist.device.type, spec.batch.global_size, spec.batch.micro_size,
        accumulation, dist.world_size, meter.kind, f"{meter.target:g}",
    )  # fmt: skip
    return Run(
        stage=stage,
        dist=dist,
        engine=engine,
        data=data,
        store=CheckpointStore(root, dist, keep=spec.checkpoint.keep),
        meter=meter,
        schedule=LrSchedule.from_spec(spec.optimizer),
        shapes=shapes,
        built=built,
        root=root,
        accumulation=accumulation,
        bf16=bf16,
        document=resolved_document(stage, init_uri),
    )


def load(run: Run) -> tuple[Counters, float | None]:
    """Resume from the latest complete checkpoint, if any: weights, optimizer, data streams, RNG, counters."""
    folder = run.store.find_resumable()
    if folder is None:
        return Counters(), None
    state = run.store.load(folder, engine=run.engine, data=run.data)
    run.saved_step = state["step"]
    counters = Counters(steps=state["step"], samples=state["samples"], tokens=state["tokens"])
    log.info(
        "resumed from %s: step %d, %d samples, %d tokens", folder, counters.steps, counters.samples, counters.tokens
    )
    return counters, state.get("loss")


def loop(
    run: Run, counters: Counters, loss: float | None, metrics: TrainerMetrics | None
) -> tuple[Counters, float | None, dict[str, Any]]:
    """Train until the budget is spent; returns the counters, the last loss and this rank's data state."""
    spec, dist = run.stage.spec, run.dist
    progress = ProgressLog(run.root, resumed_step=counters.steps) if dist.is_main else None
    device_name = torch.cuda.get_device_name(dist.device) if dist.device.type == "cuda" else None
    peak = peak_flops(device_name, "bf16" if run.bf16 else "fp32")
    data_state = run.data.state_dict()
    try:
        with Prefetcher(run.data, run.accumulation) as prefetcher:
            while not run.meter.done(counters):
                started = time.perf_counter()
                batch, data_state = prefetcher.next_step()
                counters, loss = _train_one(run, counters, batch, started, progress, metrics, peak)
                if counters.steps % spec.checkpoint.interval_steps == 0:
                    _checkpoint(run, counters, loss, data_state)
    finally:
        if progress is not None:
            progress.close()
    return counters, loss, data_state


def _train_one(
    run: Run,
    counters: Counters,
    batch: StepBatch,
    started: float,
    progress: ProgressLog | None,
    metrics: TrainerMetrics | None,
    peak: float | None,
) -> tuple[Counters, float]:
    """One optimizer step, reported on rank 0."""
    totals = StepTotals.gather(batch, run.dist)
    after = counters.after(totals.samples, totals.tokens)
    lr = run.schedule(run.meter.fraction(counters), run.meter.fraction(after))
    loss, grad_norm = train_step(run.engine, batch, totals, run.dist, step=after.steps, lr=lr, bf16=run.bf16)
    seconds = time.perf_counter() - started
    if progress is not None:
        flops = run.shapes.step_flops(tokens=totals.tokens, squares=totals.squares, tiles=totals.tiles)
        report = _report(run, after, loss, lr, grad_norm, totals, seconds, progress, flops, peak)
        progress.write(report)
        if metrics is not None:
            metrics.publish(report.metric_values())
        if after.steps == 1 or after.steps % LOG_EVERY == 0 or run.meter.done(after):
            _log_step(report)
    return after, loss


def save(run: Run, counters: Counters, loss: float | None, data_state: dict[str, Any]) -> TrainResult:
    """The last step checkpoint (unless the loop just wrote it), then `final/` and the result."""
    if run.saved_step != counters.steps:
        _checkpoint(run, counters, loss, data_state)
    state = run.engine.full_state_dict()
    if run.dist.is_main:
        dtype = getattr(torch, EXPORT_DTYPES[run.stage.spec.precision])
        try:
            folder = export_final(run.root, run.built, state, run.document, dtype=dtype)
        except ExportCheckError as exc:  # retrying would export the same folder again
            raise SpecError(f"TrainStage/{run.stage.name}: {exc}") from exc
        log.info("exported %s: %d steps, %d tokens, loss %s", folder, counters.steps, counters.tokens, loss)
    run.dist.barrier()
    return TrainResult(
        checkpoint=run.stage.spec.checkpoint.uri.rstrip("/") + "/" + FINAL,
        steps=counters.steps,
        samples=counters.samples,
        tokens=counters.tokens,
        loss=loss,
    )


def _checkpoint(run: Run, counters: Counters, loss: float | None, data_state: dict[str, Any]) -> None:
    dropped: dict[str, int] = {}
    for counts in run.dist.all_gather(data_state["dropped"]):
        for reason, n in counts.items():
            dropped[reason] = dropped.get(reason, 0) + n
    state = {"samples": counters.samples, "tokens": counters.tokens, "loss": loss, "dropped": dropped}
    folder = run.store.save(
        counters.steps, engine=run.engine, data_state=data_state, trainer_state=state, stage=run.document
    )
    run.saved_step = counters.steps
    log.info("checkpoint %s written", folder)


def _report(
    run: Run,
    counters: Counters,
    loss: float,
    lr: float,
    grad_norm: float,
    totals: StepTotals,
    seconds: float,
    progress: ProgressLog,
    flops: float,
    peak: float | None,
) -> StepReport:
    total = run.meter.total_steps(counters)
    per_second = progress.throughput(totals.tokens, seconds)
    step_time = progress.step_time()
    return StepReport(
        step=counters.steps,
        total_steps=total,
        loss=loss,
        lr=lr,
        grad_norm=grad_norm,
        samples=counters.samples,
        tokens=counters.tokens,
        tokens_per_second=per_second,
        mfu=flops / (seconds * peak * run.dist.world_size) if peak else None,
        percent=100.0 * run.meter.fraction(counters),
        eta_seconds=(total - counters.steps) * step_time if total is not None else None,
        seconds=seconds,
    )


def _log_step(report: StepReport) -> None:
    total = report.total_steps if report.total_steps is not None else "?"
    mfu = f"{report.mfu:.1%}" if report.mfu is not None else "-"
    log.info(
        "step %d/%s loss %.4f lr %.3g grad-norm %.3g tokens %d (%.0f tok/s) mfu %s",
        report.step, total, report.loss, report.lr, report.grad_norm, report.tokens, report.tokens_per_second, mfu,
    )  # fmt: skip


def gradient_accumulation(spec: TrainStageSpec, world_size: int) -> int:
    """globalSize / (microSize x processes), refusing a split that does not divide."""
    per_pass = spec.batch.micro_size * world_size
    if spec.batch.global_size % per_pass:
        raise SpecError(
            f"spec.batch.globalSize {spec.batch.global_size} is not a multiple of microSize x processes = "
            f"{spec.batch.micro_size} x {world_size} = {per_pass}"
        )
    if world_size != spec.runtime.world_size:
        log.warning(
            "running %d process(es) where spec.runtime asks for %d; gradient accumulation keeps the global batch",
            world_size, spec.runtime.world_size,
        )  # fmt: skip
    return spec.batch.global_size // per_pass


def checkpoint_root(uri: str, pvc_root: str | None) -> Path:
    if scheme_of(uri) not in ("file", "pvc"):
        raise SpecError(
            f"spec.checkpoint.uri must be a folder on this machine (a path, file:// or a mounted pvc://); found {uri!r}"
        )
    return resolve_uri(uri, pvc_root)


def resolve_init(spec: TrainStageSpec, settings: TrainerSettings) -> str | None:
    init = spec.model.init
    if init is None:
        return None
    if init.uri is not None:
        return init.uri
    if settings.init_uri is None:
        raise SpecError(
            f"spec.model.init names TrainStage/{init.stage}: set SAILVL_INIT_URI to that stage's final checkpoint "
            "(the operator and `sailvl run` resolve it)"
        )
    return settings.init_uri


def resolved_document(stage: TrainStage, init_uri: str | None) -> dict[str, Any]:
    """The stage as trained: references resolved, defaults filled, the inputs' lineage in status.resolved."""
    document = stage.to_manifest()
    document.pop("status", None)
    if init_uri is not None:
        document["spec"]["model"]["init"] = {"uri": init_uri}
    data = {e.name: e.source.uri for e in stage.spec.data.mixture if e.source.uri is not None}
    document["status"] = {"resolved": {**({"init": init_uri} if init_uri else {}), "data": data}}
    return document


def seed_everything(seed: int, rank: int) -> None:
    """Python, numpy and torch seeded per rank (dropout differs between ranks; initialisation is seeded apart)."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)
