"""Object metadata and the envelope (`apiVersion`, `kind`, `metadata`, `spec`, `status`) of every resource."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from pydantic import Field

from sailvl.api.base import ApiModel, CelRule, ResourceName, Timestamp
from sailvl.api.conditions import Condition, Phase


class ObjectMeta(ApiModel):
    """Standard Kubernetes object metadata; sailvl reads `name`, `namespace`, `labels` and `generation`."""

    name: ResourceName
    """Name of the resource (DNS-1035, at most 40 characters: child objects append suffixes)."""
    namespace: str | None = Field(default=None, min_length=1, max_length=63)
    """Namespace of the resource; references resolve within it."""
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
    def references(self) -> list[tuple[str, str]]:
        """The (kind, name) of every resource this one waits for, in spec order."""
