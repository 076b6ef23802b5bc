"""Object metadata and the envelope (`apiVersion`, `kind`, `metadata`, `spec`, `status`) of every resource."""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from sailvl.api.base import ApiModel, CelRule, FieldError, ResourceName, Timestamp
from sailvl.api.conditions import Condition, Phase

# The API server's own rules for metadata (k8s.io/apimachinery validation), which no CRD schema changes.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
ANNOTATIONS_LIMIT = 256 * 1024  # bytes of all annotation keys and values together


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a label or annotation key (`[prefix/]name`), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and len(prefix) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return f"the prefix before '/' must be a DNS subdomain (at most 253 lower-case characters); found {key!r}"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (
            "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit "
            f"(an optional DNS-subdomain prefix and '/' before it); found {key!r}"
        )
    return None


class ObjectMeta(ApiModel):
    """Standard Kubernetes object metadata; sailvl reads `name`, `namespace`, `labels` and `generation`. Checked as
    the API server checks metadata, so what passes here passes there."""

    name: ResourceName
    """Name of the resource (DNS-1035, at most 40 characters: child objects append suffixes)."""
    namespace: str | None = Field(default=None, max_length=63)
    """Namespace of the resource; references resolve within it. Empty: the namespace it is applied to."""
    labels: dict[str, str] | None = None
    """Labels, copied to every child object."""
    annotations: dict[str, str] | None = None
    """Annotations."""
    # Set by the API server; accepted so objects read back from a cluster validate too.
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    managed_fields: list[dict[str, Any]] | None = None
    self_link: str | None = None
    generate_name: str | None = None

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _null_values_are_empty(cls, value: Any) -> Any:
        # The API server's Go map[string]string keeps a null value as "".
        if isinstance(value, dict):
            return {k: "" if v is None else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _as_the_api_server_checks(self) -> ObjectMeta:
        if self.namespace == "":
            self.namespace = None  # kubectl and the API server put it in the namespace it is applied to
        if self.namespace is not None and not _DNS1123_LABEL.fullmatch(self.namespace):
            raise FieldError(
                "namespace",
                f"must be a DNS-1123 label (lower-case letters, digits and '-', at most 63); found {self.namespace!r}",
            )
        for key, value in (self.labels or {}).items():
            problem = qualified_name_problem(key)
            if problem:
                raise FieldError(f"labels[{key!r}]", f"a label key {problem[0].lower()}{problem[1:]}")
            if len(value) > 63 or (value and not _QUALIFIED_NAME.fullmatch(value)):
                raise FieldError(
                    f"labels[{key!r}]",
                    "a label value must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending "
                    f"with a letter or digit; found {value!r}",
                )
        size = 0
        for key, value in (self.annotations or {}).items():
            problem = qualified_name_problem(key)
            if problem:
                raise FieldError(f"annotations[{key!r}]", f"an annotation key {problem[0].lower()}{problem[1:]}")
            size += len(key.encode()) + len(value.encode())
        if size > ANNOTATIONS_LIMIT:
            raise FieldError("annotations", f"must total at most {ANNOTATIONS_LIMIT} bytes; found {size}")
        return self


class ResourceStatus(ApiModel):
    """Status fields every sailvl resource has."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the status describes."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Valid, DependenciesReady, ModelsReady, Running, Succeeded, Failed, Suspended (Kubernetes condition
    conventions)."""
    phase: Phase | None = None
    """One-word summary for `kubectl get`, derived from the conditions: Pending, Waiting, Running, Restarting,
    Succeeded, Failed or Suspended."""
    start_time: Timestamp | None = None
    """When the workload first started running."""
    completion_time: Timestamp | None = None
    """When the resource Succeeded or Failed."""
    message: str | None = Field(default=None, max_length=32768)
    """The latest human-readable explanation of the state."""


class Resource(ApiModel):
    """The envelope shared by TrainStage, CurationRun and EvalSuite."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]]
    # (column name, JSON path, type, description, priority) for `kubectl get`.
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]]
    # Spec fields (camelCase) that define what the resource computes and may not change once set.
    IMMUTABLE_SPEC_FIELDS: ClassVar[tuple[str, ...]] = ()

    api_version: str = Field(alias="apiVersion")
    """The API version: sailvl.io/v1alpha1."""
    kind: str
    """The resource kind."""
    metadata: ObjectMeta
    """Standard object metadata."""

    cel_rules = (
        CelRule(
            "size(self.metadata.name) <= 40",
            "metadata.name must be at most 40 characters: child objects append suffixes "
            "and Kubernetes caps names at 63",
            ".metadata.name",
        ),
        CelRule(
            "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "metadata.name must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter",
            ".metadata.name",
        ),
    )

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @abstractmethod
    def reference_fields(self) -> list[tuple[str, str, str]]:
        """(field path, kind, name) of every resource this one waits for, in spec order."""

    def references(self) -> list[tuple[str, str]]:
        """The (kind, name) of every resource this one waits for, in spec order."""
        return [(kind, name) for _, kind, name in self.reference_fields()]
