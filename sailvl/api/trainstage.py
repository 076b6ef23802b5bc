"""TrainStage: one stage of the SAIL-VL curriculum (pretraining or SFT), run as a gang of trainer pods."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from sailvl.api.base import (
    API_VERSION,
    ApiModel,
    ApiVersion,
    CelRule,
    FieldError,
    LabelName,
    Timestamp,
    exactly_one,
    no_repeats,
)
from sailvl.api.common import DataRef, ModelRef, Precision, Runtime
from sailvl.api.meta import Resource, ResourceStatus
from sailvl.api.uris import Uri

Preset = Literal["tiny", "sail-vl-2b"]
Component = Literal["vision", "projector", "language"]
COMPONENTS: tuple[Component, ...] = ("vision", "projector", "language")
Template = Literal["caption", "chat", "text"]


class ComponentCheckpoint(ApiModel):
    """A pretrained component to assemble a first-stage model from."""

    uri: Uri
    """URI of the component's Hugging Face checkpoint folder."""


class ModelSpec(ApiModel):
    """The model a stage starts from: a previous stage or checkpoint (`init`), or a `preset` for a first stage."""

    init: ModelRef | None = None
    """Start from these weights (a previous stage's final checkpoint or a URI); optimizer state is not carried over."""
    preset: Preset | None = None
    """Architecture of a first stage: `tiny` (about 1M parameters, 224px tiles, CPU-sized) or `sail-vl-2b`
    (InternViT-300M-448px + MLP projector + Qwen2.5-1.5B). Random weights unless `vision`/`language` give component
    checkpoints."""
    vision: ComponentCheckpoint | None = None
    """Vision tower checkpoint (InternViT) to start a `preset` from."""
    language: ComponentCheckpoint | None = None
    """Language model checkpoint (Qwen2) to start a `preset` from; its tokenizer gains the image tokens."""
    max_tiles: int = Field(default=6, ge=1, le=64)
    """Most 448px (tileSize) tiles per image in dynamic-resolution tiling, thumbnail excluded."""
    tile_size: int | None = Field(default=None, ge=28, le=1792, multiple_of=28)
    """Side of one tile in pixels for a preset; a multiple of 28 (patch 14 and 2x2 pixel shuffle). Default: the
    preset's own (448 for sail-vl-2b, 224 for tiny). A checkpoint given by init fixes its own tile size."""

    cel_rules = (
        CelRule("has(self.init) != has(self.preset)", "exactly one of init, preset must be set"),
        CelRule(
            "has(self.preset) || (!has(self.vision) && !has(self.language))",
            "vision and language component checkpoints apply to a preset only",
        ),
        CelRule(
            "has(self.preset) || !has(self.tileSize)",
            "tileSize applies to a preset only: a checkpoint fixes its own tile size",
            ".tileSize",
        ),
    )

    @model_validator(mode="after")
    def _one_start(self) -> ModelSpec:
        exactly_one(self, ("init", "preset"))
        if self.preset is None:
            for field in ("vision", "language"):
                if getattr(self, field) is not None:
                    raise FieldError(field, "a component checkpoint applies to a preset only; found it with init")
            if self.tile_size is not None:
                raise FieldError(
                    "tileSize",
                    f"applies to a preset only: a checkpoint fixes its own tile size; found {self.tile_size} with init",
                )
        return self


class MixtureEntry(ApiModel):
    """One source in the stage's data mixture."""

    name: LabelName
    """Name of the source (DNS-1123 label), unique in the mixture; it keys the resumable data state."""
    source: DataRef
    """Where the records come from."""
    weight: float = Field(default=1.0, gt=0, le=1e6)
    """Relative sampling weight; weights are normalised over the mixture."""


class TrainData(ApiModel):
    """What the stage trains on and how records become token sequences."""

    mixture: list[MixtureEntry] = Field(
        min_length=1,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Sources sampled by weight, in a deterministic, resumable order."""
    template: Template = "chat"
    """How records are rendered: `caption` (image then caption; pretraining), `chat` (ChatML conversations; SFT) or
    `text` (text only)."""
    max_length: int = Field(default=4096, ge=64, le=131072)
    """Longest token sequence; longer samples are truncated."""
    packing: bool = False
    """Pack several samples into one sequence up to maxLength (attention stays within each sample)."""

    @model_validator(mode="after")
    def _unique_names(self) -> TrainData:
        seen: set[str] = set()
        for i, entry in enumerate(self.mixture):
            if entry.name in seen:
                raise FieldError(f"mixture[{i}].name", f"must be unique in the mixture; {entry.name!r} appears twice")
            seen.add(entry.name)
        return self


class Budget(ApiModel):
    """How long the stage trains: exactly one of tokens, samples, steps or epochs, counted exactly as trained."""

    tokens: int | None = Field(default=None, ge=1)
    """Train until this many tokens (text and image tokens, padding excluded) have been seen."""
    samples: int | None = Field(default=None, ge=1)
    """Train until this many samples have been seen."""
    steps: int | None = Field(default=None, ge=1)
    """Train for this many optimizer steps."""
    epochs: float | None = Field(default=None, gt=0, le=1000)
    """Train for this many passes over the mixture (fractions allowed)."""

    cel_rules = (
        CelRule(
            "(has(self.tokens) ? 1 : 0) + (has(self.samples) ? 1 : 0) + (has(self.steps) ? 1 : 0)"
            " + (has(self.epochs) ? 1 : 0) == 1",
            "exactly one of tokens, samples, steps, epochs must be set",
        ),
    )

    @model_validator(mode="after")
    def _one_measure(self) -> Budget:
        exactly_one(self, ("tokens", "samples", "steps", "epochs"))
        return self


class Optimizer(ApiModel):
    """AdamW and its learning-rate schedule."""

    lr: float = Field(gt=0, le=1)
    """Peak learning rate."""
    min_lr: float = Field(default=0.0, ge=0, le=1)
    """Learning rate at the end of the schedule; at most lr."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warmup: cosine, linear or constant."""
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    """Share of the steps spent warming up linearly from 0 to lr."""
    weight_decay: float = Field(default=0.05, ge=0, le=10)
    """Decoupled weight decay (not applied to biases and norms)."""
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    """AdamW beta1 and beta2, each in [0, 1)."""
    grad_clip: float = Field(default=1.0, ge=0)
    """Clip the global gradient norm to this value; 0 disables clipping."""

    cel_rules = (
        CelRule("!has(self.minLr) || self.minLr <= self.lr", "minLr must be at most lr", ".minLr"),
        CelRule(
            "!has(self.betas) || self.betas.all(b, b >= 0.0 && b < 1.0)",
            "betas must each be in [0, 1)",
            ".betas",
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Optimizer:
        if self.min_lr > self.lr:
            raise FieldError("minLr", f"must be at most lr ({self.lr}); found {self.min_lr}")
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise FieldError(f"betas[{i}]", f"must be in [0, 1); found {beta}")
        return self


class Batch(ApiModel):
    """Batch sizes, in samples (sequences when packing)."""

    global_size: int = Field(ge=1, le=1 << 20)
    """Samples per optimizer step across all processes; gradient accumulation = globalSize / (microSize x processes)."""
    micro_size: int = Field(default=1, ge=1, le=4096)
    """Samples per process per forward/backward pass."""

    cel_rules = (
        CelRule(
            "self.globalSize % (has(self.microSize) ? self.microSize : 1) == 0",
            "globalSize must be a multiple of microSize",
            ".globalSize",
        ),
    )

    @model_validator(mode="after")
    def _divides(self) -> Batch:
        if self.global_size % self.micro_size:
            raise FieldError(
                "globalSize", f"must be a multiple of microSize ({self.micro_size}); found {self.global_size}"
            )
        return self


class Parallelism(ApiModel):
    """How the model is distributed over processes; the model code does not know which engine wraps it."""

    engine: Literal["ddp", "fsdp", "deepspeed"] = "ddp"
    """ddp (replicated), fsdp (FSDP2, sharded per layer) or deepspeed (ZeRO)."""
    zero_stage: int | None = Field(default=None, ge=0, le=3)
    """DeepSpeed ZeRO stage 0-3 (deepspeed only). Default: 2."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""

    cel_rules = (
        CelRule(
            "!has(self.zeroStage) || (has(self.engine) && self.engine == 'deepspeed')",
            "zeroStage applies to engine deepspeed only",
            ".zeroStage",
        ),
    )

    @model_validator(mode="after")
    def _zero_only_deepspeed(self) -> Parallelism:
        if self.zero_stage is not None and self.engine != "deepspeed":
            raise FieldError("zeroStage", f"applies to engine deepspeed only; found engine {self.engine!r}")
        return self


class Checkpointing(ApiModel):
    """Where and how often the stage checkpoints; a restarted gang resumes from the latest checkpoint."""

    uri: Uri
    """Folder of this stage's checkpoints: `step-<N>/` folders, a `latest` pointer and the exported `final/` model."""
    interval_steps: int = Field(default=1000, ge=1)
    """Save every this many optimizer steps (and always at the end)."""
    keep: int = Field(default=2, ge=1, le=1000)
    """Most recent step checkpoints kept; older ones are deleted once a newer one is complete."""


class TrainRuntime(Runtime):
    """Where the trainer runs, and which Kubeflow API runs it."""

    kind: Literal["PyTorchJob", "TrainJob"] = "PyTorchJob"
    """Kubeflow workload: PyTorchJob (kubeflow.org/v1) or TrainJob (trainer.kubeflow.org/v1alpha1)."""


class TrainStageSpec(ApiModel):
    """The desired stage: model, data, budget, optimisation and where it runs."""

    model: ModelSpec
    """The model the stage starts from."""
    trainable: Annotated[list[Component], AfterValidator(no_repeats)] = Field(
        min_length=1, max_length=3, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Components that train: a non-empty subset of vision, projector, language; the rest is frozen."""
    data: TrainData
    """The data mixture and how it is rendered."""
    budget: Budget
    """How long to train."""
    optimizer: Optimizer
    """AdamW and the learning-rate schedule."""
    batch: Batch
    """Batch sizes."""
    precision: Precision = "bf16"
    """bf16 (mixed precision on GPUs; a CPU computes in fp32) or fp32. The exported checkpoint stores its weights in
    this precision (bfloat16 or float32), declares it in config.json and is served in it."""
    parallelism: Parallelism = Field(default_factory=Parallelism)
    """The distribution engine."""
    checkpoint: Checkpointing
    """Where checkpoints go."""
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    """Seed of initialisation and data order; a fixed seed gives identical losses."""
    runtime: TrainRuntime = Field(default_factory=TrainRuntime)
    """Nodes, GPUs and pod placement."""
    max_restarts: int = Field(default=3, ge=0, le=1000)
    """Whole-gang restarts from the latest checkpoint after a failure before the stage is Failed."""
    suspend: bool = False
    """true stops the running job and keeps the checkpoints; false resumes from the latest one."""
    progress_deadline_seconds: int | None = Field(default=None, ge=1)
    """Seconds the training step may go without advancing (as rank 0's metrics report it) before the attempt is
    treated as failed and the gang restarted from the latest checkpoint. Unset: no deadline."""

    cel_rules = (
        CelRule(
            "!has(self.runtime) || self.batch.globalSize % ((has(self.batch.microSize) ? self.batch.microSize : 1)"
            " * (has(self.runtime.nodes) ? self.runtime.nodes : 1)"
            " * (has(self.runtime.gpusPerNode) && self.runtime.gpusPerNode > 0 ? self.runtime.gpusPerNode : 1)) == 0",
            "batch.globalSize must be a multiple of batch.microSize x runtime.nodes x runtime.gpusPerNode",
            ".batch.globalSize",
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainStageSpec:
        world = self.runtime.world_size
        per_step = self.batch.micro_size * world
        if self.batch.global_size % per_step:
            raise FieldError(
                "batch.globalSize",
                f"must be a multiple of microSize x processes = {self.batch.micro_size} x {world} = {per_step} "
                f"(runtime.nodes {self.runtime.nodes}, gpusPerNode {self.runtime.gpus_per_node}); "
                f"found {self.batch.global_size}",
            )
        return self

    @property
    def gradient_accumulation(self) -> int:
        return self.batch.global_size // (self.batch.micro_size * self.runtime.world_size)


class JobRef(ApiModel):
    """The Kubeflow job running the current attempt."""

    kind: str = Field(max_length=63)
    """PyTorchJob or TrainJob."""
    name: str = Field(max_length=63)
    """Name of the job."""
    attempt: int = Field(ge=0)
    """Attempt number, 0 for the first; each whole-gang restart adds one."""


class ResolvedInputs(ApiModel):
    """The lineage: the inputs as actually used, references resolved."""

    init: str | None = Field(default=None, max_length=2048)
    """URI of the checkpoint the stage started from."""
    data: dict[str, Annotated[str, Field(max_length=2048)]] = Field(default_factory=dict, max_length=32)
    """Mixture entry name to the URI its records were read from."""


class TrainProgress(ApiModel):
    """Training progress as rank 0 reports it."""

    step: int = Field(default=0, ge=0)
    """Optimizer steps done."""
    total_steps: int | None = Field(default=None, ge=0)
    """Optimizer steps the budget amounts to (estimated for token and epoch budgets)."""
    percent: float | None = Field(default=None, ge=0, le=100)
    """Share of the budget done, in percent."""
    tokens: int | None = Field(default=None, ge=0)
    """Tokens trained on so far."""
    loss: float | None = None
    """Latest training loss."""
    tokens_per_second: float | None = Field(default=None, ge=0)
    """Recent throughput over the whole gang."""
    eta: str | None = Field(default=None, max_length=64)
    """Estimated time remaining (e.g. 3h12m)."""
    last_advance_time: Timestamp | None = None
    """When the step last advanced (RFC 3339); progressDeadlineSeconds counts from it."""


class CheckpointStatus(ApiModel):
    """Checkpoints written so far."""

    latest: str | None = Field(default=None, max_length=2048)
    """URI of the latest complete step checkpoint."""
    final: str | None = Field(default=None, max_length=2048)
    """URI of the exported Hugging Face checkpoint, once the stage has Succeeded; what `init.stage` resolves to."""


class TrainStageStatus(ResourceStatus):
    """Observed state of a TrainStage."""

    resolved: ResolvedInputs | None = None
    """The inputs as actually used (lineage)."""
    job: JobRef | None = None
    """The job of the current attempt."""
    restarts: int = Field(default=0, ge=0)
    """Whole-gang restarts so far."""
    progress: TrainProgress | None = None
    """Training progress."""
    checkpoint: CheckpointStatus | None = None
    """Checkpoints written."""
    retry_token: str | None = Field(default=None, max_length=256)
    """The `sailvl.io/retry` annotation value last seen; setting the annotation to a new value retries a Failed
    stage as a new attempt."""


class TrainStage(Resource):
    """One stage of the SAIL-VL curriculum: trains a model on a data mixture as a gang of torchrun pods."""

    KIND = "TrainStage"
    PLURAL = "trainstages"
    SHORT_NAMES = ("ts",)
    PRINTER_COLUMNS = (
        ("Phase", ".status.phase", "string", "Summary of the conditions", 0),
        ("Progress", ".status.progress.percent", "number", "Share of the budget done (%)", 0),
        ("Step", ".status.progress.step", "integer", "Optimizer steps done", 1),
        ("Loss", ".status.progress.loss", "number", "Latest training loss", 0),
        ("Restarts", ".status.restarts", "integer", "Whole-gang restarts", 0),
        ("ETA", ".status.progress.eta", "string", "Estimated time remaining", 1),
        ("Age", ".metadata.creationTimestamp", "date", "Time since creation", 0),
    )
    IMMUTABLE_SPEC_FIELDS = (
        "model",
        "trainable",
        "data",
        "budget",
        "optimizer",
        "batch",
        "precision",
        "seed",
        "checkpoint.uri",
    )

    api_version: ApiVersion = Field(default=API_VERSION, alias="apiVersion")
    """The API version: sailvl.io/v1alpha1."""
    kind: Literal["TrainStage"] = "TrainStage"
    """TrainStage."""
    spec: TrainStageSpec
    """The desired stage."""
    status: TrainStageStatus | None = None
    """The observed state, written by the operator or the local runner."""

    def reference_fields(self) -> list[tuple[str, str, str]]:
        refs: list[tuple[str, str, str]] = []
        if self.spec.model.init is not None and self.spec.model.init.stage is not None:
            refs.append(("spec.model.init.stage", "TrainStage", self.spec.model.init.stage))
        for i, entry in enumerate(self.spec.data.mixture):
            if entry.source.curation_run is not None:
                refs.append((f"spec.data.mixture[{i}].source.curationRun", "CurationRun", entry.source.curation_run))
        return refs
