"""CurationRun: the data factory — recaption, judge, score, filter and dedup records with served models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sailvl.api.base import (
    API_VERSION,
    ApiModel,
    ApiVersion,
    CelRule,
    FieldError,
    LabelName,
    LongText,
    ServingName,
    ShortText,
    exactly_one,
)
from sailvl.api.common import DataRef, PodRuntime, Serving
from sailvl.api.meta import Resource, ResourceStatus
from sailvl.api.uris import Uri

STEP_KINDS = ("recaption", "judge", "score", "filter", "dedup")
MODEL_STEPS = ("recaption", "judge", "score")


class RecaptionStep(ApiModel):
    """Replace each record's text with a caption written by a served model."""

    model: ServingName
    """Name of the served model (one of spec.models) that writes the captions."""
    prompt: LongText = "Describe this image in detail."
    """Instruction sent with the image."""
    use_alt_text: bool = False
    """Give the record's original alt text to the model as a hint."""
    max_tokens: int = Field(default=512, ge=1, le=32768)
    """Longest caption, in tokens."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    """Sampling temperature; 0 is greedy and reproducible."""


class JudgeStep(ApiModel):
    """Score each record on a 1-5 scale with a served judge and keep those that reach minScore."""

    model: ServingName
    """Name of the served judge model (one of spec.models)."""
    criteria: list[ShortText] = Field(
        default_factory=lambda: ["the caption is accurate to the image", "the caption is detailed"],
        min_length=1,
        max_length=16,
    )
    """What the judge rates the image and text on; the score reflects all criteria together."""
    min_score: float = Field(default=3.0, ge=1, le=5)
    """Keep a record only if its score reaches this value (1-5)."""


class ScoreStep(ApiModel):
    """Annotate each record's meta with scores from a served model (drops nothing); used to order a curriculum."""

    model: ServingName
    """Name of the served model (one of spec.models) that scores."""
    metrics: list[LabelName] = Field(min_length=1, max_length=16)
    """Scores to record, e.g. difficulty, complexity, relevance (each 1-5, stored under meta.scores)."""


class FilterStep(ApiModel):
    """Drop records that fail simple rules (counted by reason)."""

    min_chars: int | None = Field(default=None, ge=0)
    """Fewest characters of text a record may have."""
    max_chars: int | None = Field(default=None, ge=1)
    """Most characters of text a record may have."""
    require: list[Literal["image", "text", "conversations"]] = Field(default_factory=list, max_length=3)
    """Fields a record must have (non-empty)."""
    min_image_side: int | None = Field(default=None, ge=1, le=65536)
    """Smallest allowed shorter image side, in pixels."""
    max_aspect_ratio: float | None = Field(default=None, ge=1)
    """Largest allowed ratio of the longer to the shorter image side."""

    cel_rules = (
        CelRule(
            "!has(self.minChars) || !has(self.maxChars) || self.minChars <= self.maxChars",
            "minChars must be at most maxChars",
            ".minChars",
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> FilterStep:
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise FieldError("minChars", f"must be at most maxChars ({self.max_chars}); found {self.min_chars}")
        return self


class DedupStep(ApiModel):
    """Drop duplicates across the whole run: signatures per record, then a global pass that keeps the first by id."""

    image: Literal["exact", "phash"] | None = None
    """Image duplicates: exact (same bytes after decoding) or phash (perceptual hash within phashDistance)."""
    text: Literal["minhash"] | None = None
    """Text near-duplicates by MinHash of the text at Jaccard similarity `threshold`."""
    threshold: float = Field(default=0.85, gt=0, le=1)
    """MinHash Jaccard similarity at or above which two texts are duplicates."""
    phash_distance: int = Field(default=4, ge=0, le=64)
    """Largest Hamming distance between 64-bit perceptual hashes counted as the same image."""

    cel_rules = (CelRule("has(self.image) || has(self.text)", "at least one of image, text must be set"),)

    @model_validator(mode="after")
    def _something(self) -> DedupStep:
        if self.image is None and self.text is None:
            raise ValueError("at least one of image, text must be set; found neither")
        return self


class CurationStep(ApiModel):
    """One step of the pipeline: exactly one of recaption, judge, score, filter, dedup."""

    recaption: RecaptionStep | None = None
    """Rewrite the text with a served captioner."""
    judge: JudgeStep | None = None
    """Keep records a served judge scores at least minScore."""
    score: ScoreStep | None = None
    """Annotate records with scores."""
    filter: FilterStep | None = None
    """Drop records by simple rules."""
    dedup: DedupStep | None = None
    """Drop duplicate images or texts."""

    cel_rules = (
        CelRule(
            " + ".join(f"(has(self.{k}) ? 1 : 0)" for k in STEP_KINDS) + " == 1",
            "exactly one of recaption, judge, score, filter, dedup must be set",
        ),
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CurationStep:
        exactly_one(self, STEP_KINDS)
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def model(self) -> str | None:
        step = getattr(self, self.kind)
        return getattr(step, "model", None)


class CurationOutput(ApiModel):
    """Where the curated shards go."""

    uri: Uri
    """Folder of `part-NNNNN.parquet` shards and `_manifest.json`; existing complete shards are skipped on rerun."""
    samples_per_shard: int = Field(default=10000, ge=1, le=10_000_000)
    """Records per output shard."""


class CurationWorkers(ApiModel):
    """The worker pods that push records through the steps."""

    parallelism: int = Field(default=1, ge=1, le=10000)
    """Number of worker pods (an Indexed Job); input shards are split round-robin over them."""
    concurrency: int = Field(default=16, ge=1, le=4096)
    """Requests in flight per worker, to keep the servers saturated."""
    runtime: PodRuntime = Field(default_factory=PodRuntime)
    """Image, CPU, memory and placement of the worker pods."""


class CurationRunSpec(ApiModel):
    """The desired run: input, served models, the ordered steps and the output."""

    input: DataRef
    """Records to curate."""
    output: CurationOutput
    """Where the curated records go."""
    models: list[Serving] = Field(
        default_factory=list,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """vLLM servers the steps use, by name; brought up before the workers and scaled to zero after."""
    steps: list[CurationStep] = Field(min_length=1, max_length=16)
    """The pipeline, applied to each record in order."""
    workers: CurationWorkers = Field(default_factory=CurationWorkers)
    """The worker pods."""
    keep_models: bool = False
    """Leave the vLLM servers running after the run ends."""
    suspend: bool = False
    """true stops the workers (finished shards are kept); false resumes."""

    cel_rules = (
        *(
            CelRule(
                f"self.steps.all(s, !has(s.{kind}) || "
                f"(has(self.models) && self.models.exists(m, m.name == s.{kind}.model)))",
                f"every {kind} step must name a model declared in models",
                ".steps",
            )
            for kind in MODEL_STEPS
        ),
    )

    @model_validator(mode="after")
    def _models_declared(self) -> CurationRunSpec:
        declared: list[str] = []
        for i, serving in enumerate(self.models):
            if serving.name in declared:
                raise FieldError(f"models[{i}].name", f"must be unique; {serving.name!r} appears twice")
            declared.append(serving.name)
        for i, step in enumerate(self.steps):
            if step.model is not None and step.model not in declared:
                known = ", ".join(declared) if declared else "none"
                raise FieldError(
                    f"steps[{i}].{step.kind}.model",
                    f"must name a model declared in spec.models (declared: {known}); found {step.model!r}",
                )
        return self


class CurationProgress(ApiModel):
    """How far the workers are."""

    shards_done: int = Field(default=0, ge=0)
    """Input shards fully processed."""
    shards_total: int | None = Field(default=None, ge=0)
    """Input shards in all."""
    percent: float | None = Field(default=None, ge=0, le=100)
    """Share of the input shards done, in percent."""
    samples_in: int = Field(default=0, ge=0)
    """Records read."""
    samples_out: int = Field(default=0, ge=0)
    """Records kept."""
    dropped: dict[str, int] = Field(default_factory=dict, max_length=64)
    """Records dropped by policy, by reason (filter, judge, dedup ...)."""
    rejected: dict[str, int] = Field(default_factory=dict, max_length=64)
    """Records rejected by failure, by reason (bad image, unparseable answer, server error ...)."""


class CurationOutputStatus(ApiModel):
    """The finished output."""

    uri: str | None = Field(default=None, max_length=2048)
    """Where the shards are."""
    shards: int | None = Field(default=None, ge=0)
    """Number of output shards."""
    samples: int | None = Field(default=None, ge=0)
    """Number of records kept."""


class CurationRunStatus(ResourceStatus):
    """Observed state of a CurationRun."""

    progress: CurationProgress | None = None
    """Progress and counts; samplesIn = samplesOut + dropped + rejected."""
    output: CurationOutputStatus | None = None
    """The output, once finalized."""


class CurationRun(Resource):
    """The data factory: runs records through served models and rules, writes curated shards."""

    KIND = "CurationRun"
    PLURAL = "curationruns"
    SHORT_NAMES = ("cur",)
    PRINTER_COLUMNS = (
        ("Phase", ".status.phase", "string", "Summary of the conditions", 0),
        ("Progress", ".status.progress.percent", "number", "Share of input shards done (%)", 0),
        ("Samples", ".status.progress.samplesOut", "integer", "Records kept", 0),
        ("In", ".status.progress.samplesIn", "integer", "Records read", 1),
        ("Age", ".metadata.creationTimestamp", "date", "Time since creation", 0),
    )
    IMMUTABLE_SPEC_FIELDS = ("input", "output", "steps")

    api_version: ApiVersion = Field(default=API_VERSION, alias="apiVersion")
    """The API version: sailvl.io/v1alpha1."""
    kind: Literal["CurationRun"] = "CurationRun"
    """CurationRun."""
    spec: CurationRunSpec
    """The desired run."""
    status: CurationRunStatus | None = None
    """The observed state, written by the operator or the local runner."""

    def reference_fields(self) -> list[tuple[str, str, str]]:
        refs: list[tuple[str, str, str]] = []
        if self.spec.input.curation_run is not None:
            refs.append(("spec.input.curationRun", "CurationRun", self.spec.input.curation_run))
        for i, serving in enumerate(self.spec.models):
            if serving.model.stage is not None:
                refs.append((f"spec.models[{i}].model.stage", "TrainStage", serving.model.stage))
        return refs
