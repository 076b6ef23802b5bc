"""Types shared by the three resources: references to models and data, where workloads run, serving."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from sailvl.api.base import ApiModel, CelRule, FieldError, Quantity, ResourceName, ServingName, exactly_one
from sailvl.api.uris import Uri, is_synthetic

DataFormat = Literal["parquet", "jsonl", "webdataset"]
Precision = Literal["bf16", "fp32"]
ServingDType = Literal["auto", "bfloat16", "float16", "float32"]
EXPORT_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp32": "float32"}
"""The dtype a TrainStage of each precision stores its exported weights in, whatever hardware it ran on; the
checkpoint declares it in config.json and is served in it."""


class ModelRef(ApiModel):
    """A model: the final checkpoint of a TrainStage, or a checkpoint at a URI. Exactly one of the two."""

    stage: ResourceName | None = None
    """Name of a TrainStage in the same namespace; its `status.checkpoint.final` is used once it has Succeeded (the
    referring resource waits until then)."""
    uri: Uri | None = None
    """URI of a Hugging Face-format checkpoint folder (s3://, gs://, hf://org/repo, pvc://claim/path or a local
    path): an InternVL model to train or evaluate, or any model vLLM serves for a judge."""

    cel_rules = (CelRule("has(self.stage) != has(self.uri)", "exactly one of stage, uri must be set"),)

    @model_validator(mode="after")
    def _one_source(self) -> ModelRef:
        exactly_one(self, ("stage", "uri"))
        return self

    def describe(self) -> str:
        return f"stage/{self.stage}" if self.stage else str(self.uri)


class DataRef(ApiModel):
    """A data set: the output of a CurationRun, or records at a URI. Exactly one of the two."""

    curation_run: ResourceName | None = None
    """Name of a CurationRun in the same namespace; its output is used once it has Succeeded (the referring resource
    waits until then)."""
    uri: Uri | None = None
    """URI of the records: a file, a folder of shards, or `synthetic://shapes?n=...&seed=...` (the built-in
    generator)."""
    format: DataFormat | None = None
    """Record format of `uri`: parquet, jsonl or webdataset. Required with `uri` except for synthetic://; a
    CurationRun's output is always parquet."""
    image_field: str | None = Field(default=None, min_length=1, max_length=253)
    """Field holding the encoded image bytes (or a list of them); for webdataset, the member extension (e.g. `jpg`).
    Default: `image` (webdataset: the first of jpg, jpeg, png, webp)."""
    text_field: str | None = Field(default=None, min_length=1, max_length=253)
    """Field holding the alt text or caption; for webdataset, the member extension (e.g. `txt`). Default: `text`
    (webdataset: `txt`)."""
    conversations_field: str | None = Field(default=None, min_length=1, max_length=253)
    """Field holding `[{role, content}]` conversations with `<image>` placeholders; for webdataset, the extension of
    a JSON member. Default: `conversations` (webdataset: `json`)."""

    cel_rules = (
        CelRule("has(self.curationRun) != has(self.uri)", "exactly one of curationRun, uri must be set"),
        CelRule(
            "!has(self.uri) || self.uri.startsWith('synthetic://') || has(self.format)",
            "format is required with uri (parquet, jsonl or webdataset)",
            ".format",
        ),
        CelRule(
            "!has(self.curationRun) || !has(self.format)",
            "format applies to uri only: a CurationRun's output is parquet",
            ".format",
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataRef:
        exactly_one(self, ("curation_run", "uri"))
        if self.uri is not None and not is_synthetic(self.uri) and self.format is None:
            raise FieldError("format", "required with uri: one of parquet, jsonl, webdataset; found none")
        if self.curation_run is not None and self.format is not None:
            raise FieldError(
                "format", f"applies to uri only (a CurationRun's output is parquet); found {self.format!r}"
            )
        return self

    def describe(self) -> str:
        return f"curationRun/{self.curation_run}" if self.curation_run else str(self.uri)


class PodRuntime(ApiModel):
    """How the pods of a workload are placed and sized."""

    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Container image. Default: the operator's configured sailvl image."""
    cpu: Quantity | None = None
    """CPU request and limit of each pod (a Kubernetes quantity such as `8` or `500m`)."""
    memory: Quantity | None = None
    """Memory request and limit of each pod (a Kubernetes quantity such as `64Gi`)."""
    pod_template: dict[str, Any] | None = None
    """A PodTemplateSpec fragment (`metadata` and `spec`) merged into every pod the workload creates: labels and
    annotations; nodeSelector, tolerations, affinity, volumes, serviceAccountName, priorityClassName,
    imagePullSecrets, securityContext; and `spec.containers` entries matched by container name (the trainer's is
    `pytorch`) to add env, envFrom, volumeMounts or resources such as RDMA devices. Lists of named items merge by
    name, other scalars override."""
    queue: str | None = Field(default=None, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Kueue LocalQueue to admit the workload through: adds the `kueue.x-k8s.io/queue-name` label and creates the
    workload suspended until Kueue admits it."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Upper bound on the wall time of one attempt, in seconds; the attempt fails when it is exceeded."""


class Runtime(PodRuntime):
    """Where a distributed workload runs: nodes, GPUs per node and pod placement."""

    nodes: int = Field(default=1, ge=1, le=4096)
    """Number of nodes (pods) in the gang."""
    gpus_per_node: int = Field(default=0, ge=0, le=16)
    """GPUs per node (`nvidia.com/gpu`); one process per GPU. 0 runs on CPU with one process per node."""

    @property
    def world_size(self) -> int:
        return self.nodes * max(self.gpus_per_node, 1)


class ServingRuntime(PodRuntime):
    """How a model is served by vLLM: replicas, GPUs and engine arguments."""

    replicas: int = Field(default=1, ge=1, le=256)
    """Number of vLLM server replicas behind the Service."""
    gpus_per_replica: int = Field(default=1, ge=0, le=16)
    """GPUs per replica (`nvidia.com/gpu`). 0 serves on CPU (the local runner's stand-in server)."""
    tensor_parallel_size: int = Field(default=1, ge=1, le=16)
    """vLLM `--tensor-parallel-size`; must divide gpusPerReplica when GPUs are used."""
    max_model_len: int | None = Field(default=None, ge=128, le=1048576)
    """vLLM `--max-model-len`: the longest prompt plus answer, in tokens. Default: the model's own."""
    dtype: ServingDType = "auto"
    """The dtype the weights are served in (vLLM `--dtype`). `auto`: the dtype the checkpoint was exported in; for a
    model that names a TrainStage that is the stage's precision (bf16 → bfloat16, fp32 → float32), passed to the
    server explicitly. For a `uri` model `auto` is left to the server, and vLLM serves a float32 checkpoint in a
    16-bit type: set float32 to serve such a checkpoint as stored."""
    extra_args: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(default_factory=list, max_length=64)
    """Further `vllm serve` arguments, passed as given (e.g. `--gpu-memory-utilization=0.92`)."""

    cel_rules = (
        CelRule(
            "!has(self.gpusPerReplica) || self.gpusPerReplica == 0 || "
            "self.gpusPerReplica % (has(self.tensorParallelSize) ? self.tensorParallelSize : 1) == 0",
            "tensorParallelSize must divide gpusPerReplica",
            ".tensorParallelSize",
        ),
    )

    @model_validator(mode="after")
    def _parallel_fits(self) -> ServingRuntime:
        if self.gpus_per_replica and self.gpus_per_replica % self.tensor_parallel_size:
            raise FieldError(
                "tensorParallelSize",
                f"must divide gpusPerReplica ({self.gpus_per_replica}); found {self.tensor_parallel_size}",
            )
        return self


class Serving(ServingRuntime):
    """A vLLM server the operator brings up for the duration of a resource."""

    name: ServingName
    """Name of the server (DNS-1035, at most 17 characters); also the served model name requests use and the suffix of
    `SAILVL_MODEL_URL_<NAME>`."""
    model: ModelRef
    """The model to serve."""
