"""EvalSuite: benchmarks for one model, served by vLLM, scored the way the community scores them."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from sailvl.api.base import API_VERSION, ApiModel, ApiVersion, CelRule, FieldError, no_repeats
from sailvl.api.benchmarks import BENCHMARKS, SYNTHETIC_BENCHMARKS
from sailvl.api.common import ModelRef, PodRuntime, Serving, ServingRuntime
from sailvl.api.conditions import REASON_JUDGE_FAILURES, REASON_JUDGE_RELIABLE, ConditionStatus
from sailvl.api.meta import Resource, ResourceStatus
from sailvl.api.uris import Uri, is_synthetic


def _known_benchmark(name: str) -> str:
    if name not in BENCHMARKS:
        close = difflib.get_close_matches(name, BENCHMARKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown benchmark {name!r}{hint}; known: {', '.join(BENCHMARKS)}")
    return name


BenchmarkName = Annotated[
    str,
    AfterValidator(_known_benchmark),
    WithJsonSchema({"type": "string", "enum": list(BENCHMARKS), "maxLength": 64}),
]


class BenchmarkOverride(ApiModel):
    """Per-benchmark settings that differ from the suite's defaults."""

    max_tiles: int | None = Field(default=None, ge=1, le=64)
    """Most tiles per image for this benchmark (e.g. more for document benchmarks)."""
    limit: int | None = Field(default=None, ge=1)
    """Evaluate only the first this many items (a quick check; the score is then not comparable)."""


class EvalData(ApiModel):
    """Where the benchmark files are."""

    uri: Uri
    """Folder of benchmark files in the VLMEvalKit TSV layout (`<benchmark>.tsv`), or `synthetic://shapes?...` for the
    shapes_* benchmarks."""


class EvalWorkers(ApiModel):
    """The evaluation pod."""

    concurrency: int = Field(default=8, ge=1, le=1024)
    """Requests in flight to the served model."""
    runtime: PodRuntime = Field(default_factory=PodRuntime)
    """Image, CPU, memory and placement of the evaluation pod."""


class EvalOutput(ApiModel):
    """Where per-item predictions and scores are written."""

    uri: Uri
    """Folder for `<benchmark>.jsonl` predictions and `results.json`; finished benchmarks are skipped on rerun."""


class EvalSuiteSpec(ApiModel):
    """The desired evaluation: which model, which benchmarks, how it is served."""

    model: ModelRef
    """The model under test."""
    benchmarks: Annotated[list[BenchmarkName], AfterValidator(no_repeats)] = Field(
        min_length=1, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Registry names, e.g. MMBench_DEV_EN, OCRBench, POPE, or the synthetic shapes_caption, shapes_vqa, shapes_count,
    shapes_ocr, shapes_pope."""
    overrides: dict[str, BenchmarkOverride] = Field(default_factory=dict, max_length=32)
    """Per-benchmark settings, keyed by a name listed in benchmarks."""
    data: EvalData
    """Where the benchmark items come from."""
    max_tiles: int = Field(default=6, ge=1, le=64)
    """Most tiles per image in dynamic-resolution tiling, thumbnail excluded (overrides may raise it per benchmark,
    e.g. for documents)."""
    judge: Serving | None = None
    """A served judge for open-ended answers (MMVet); without it those benchmarks fall back to rule-based scoring."""
    serving: ServingRuntime = Field(default_factory=ServingRuntime)
    """How the model under test is served."""
    workers: EvalWorkers = Field(default_factory=EvalWorkers)
    """The evaluation pod."""
    output: EvalOutput | None = None
    """Where per-item predictions are kept. Optional: without it only the scores are kept, in status."""
    suspend: bool = False
    """true stops the evaluation (finished benchmarks are kept); false resumes."""

    cel_rules = (
        CelRule(
            "!has(self.overrides) || self.overrides.all(k, k in self.benchmarks)",
            "every overrides key must be listed in benchmarks",
            ".overrides",
        ),
        CelRule(
            "!self.data.uri.startsWith('synthetic://') || self.benchmarks.all(b, b.startsWith('shapes_'))",
            "synthetic:// data serves the shapes_* benchmarks only",
            ".benchmarks",
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> EvalSuiteSpec:
        for key in self.overrides:
            if key not in self.benchmarks:
                raise FieldError(
                    f"overrides.{key}", f"names a benchmark not listed in benchmarks ({', '.join(self.benchmarks)})"
                )
        if is_synthetic(self.data.uri):
            for i, name in enumerate(self.benchmarks):
                if name not in SYNTHETIC_BENCHMARKS:
                    raise FieldError(
                        f"benchmarks[{i}]",
                        f"synthetic:// data serves only {', '.join(SYNTHETIC_BENCHMARKS)}; found {name!r} "
                        "(point data.uri at a folder of benchmark files)",
                    )
        return self

    def tiles_for(self, benchmark: str) -> int:
        """The most tiles per image `benchmark` is asked with: its override, else the suite's."""
        override = self.overrides.get(benchmark)
        return (override.max_tiles if override else None) or self.max_tiles

    def most_tiles(self) -> int:
        """The most tiles per image any benchmark of the suite asks for (what its server must be ready for)."""
        return max(self.tiles_for(b) for b in self.benchmarks)


class EvalProgress(ApiModel):
    """How far the evaluation is."""

    benchmarks_done: int = Field(default=0, ge=0)
    """Benchmarks fully scored."""
    benchmarks_total: int | None = Field(default=None, ge=0)
    """Benchmarks in the suite."""
    items_done: int = Field(default=0, ge=0)
    """Items answered."""
    items_total: int | None = Field(default=None, ge=0)
    """Items in all benchmarks."""
    percent: float | None = Field(default=None, ge=0, le=100)
    """Share of items answered, in percent."""


class GroupScores(ApiModel):
    """Average score per benchmark group (over the group's benchmarks that were run)."""

    general_vqa: float | None = Field(default=None, alias="generalVQA")
    """MMBench_DEV_EN, MMBench_DEV_EN_V11, MMStar, MME, SEEDBench_IMG, RealWorldQA, MMVet."""
    ocr_vqa: float | None = Field(default=None, alias="ocrVQA")
    """OCRBench, InfoVQA_VAL, ChartQA_TEST, DocVQA_VAL, TextVQA_VAL."""
    math_knowledge: float | None = Field(default=None, alias="mathKnowledge")
    """MMMU_DEV_VAL, MathVista_MINI, AI2D_TEST."""
    hallucination: float | None = None
    """HallusionBench, POPE."""


class EvalSuiteStatus(ResourceStatus):
    """Observed state of an EvalSuite."""

    results: dict[str, float] = Field(default_factory=dict, max_length=64)
    """Score per benchmark, on a 0-100 scale."""
    average: float | None = None
    """Mean of the benchmark scores."""
    groups: GroupScores | None = None
    """Mean score per group."""
    progress: EvalProgress | None = None
    """How far the evaluation is."""


class EvalSuite(Resource):
    """Benchmarks for one model: serves it, answers every item, scores, averages per group."""

    KIND = "EvalSuite"
    PLURAL = "evalsuites"
    SHORT_NAMES = ("evs",)
    PRINTER_COLUMNS = (
        ("Phase", ".status.phase", "string", "Summary of the conditions", 0),
        ("Progress", ".status.progress.percent", "number", "Share of items answered (%)", 0),
        ("Average", ".status.average", "number", "Mean benchmark score", 0),
        ("Age", ".metadata.creationTimestamp", "date", "Time since creation", 0),
    )
    IMMUTABLE_SPEC_FIELDS = ("model",)

    api_version: ApiVersion = Field(default=API_VERSION, alias="apiVersion")
    """The API version: sailvl.io/v1alpha1."""
    kind: Literal["EvalSuite"] = "EvalSuite"
    """EvalSuite."""
    spec: EvalSuiteSpec
    """The desired evaluation."""
    status: EvalSuiteStatus | None = None
    """The observed state, written by the operator or the local runner."""

    def reference_fields(self) -> list[tuple[str, str, str]]:
        refs: list[tuple[str, str, str]] = []
        if self.spec.model.stage is not None:
            refs.append(("spec.model.stage", "TrainStage", self.spec.model.stage))
        if self.spec.judge is not None and self.spec.judge.model.stage is not None:
            refs.append(("spec.judge.model.stage", "TrainStage", self.spec.judge.model.stage))
        return refs


def degraded_condition(message: Mapping[str, Any]) -> tuple[ConditionStatus, str, str]:
    """(status, reason, message) of the `Degraded` condition from an eval termination message, whose `degraded`
    maps each benchmark whose judge failed too often to [failures, replies the judge was asked about]."""
    found = message.get("degraded")
    failing = found if isinstance(found, Mapping) else {}
    parts = []
    for name, counts in sorted(failing.items()):
        if isinstance(counts, list) and len(counts) == 2:
            parts.append(f"{name}: the judge failed on {counts[0]} of {counts[1]} replies")
    if parts:
        return "True", REASON_JUDGE_FAILURES, "; ".join(parts) + " (scored as wrong; see results.json)"
    return "False", REASON_JUDGE_RELIABLE, "no benchmark's judge failed on more than 5% of its replies"
