"""The base every API type derives from, and the building blocks of its fields.

Every model is strict (a YAML string is never silently turned into a number, exactly as the API
server would refuse it), forbids unknown fields, and speaks camelCase in manifests while Python code
uses snake_case. Cross-field rules live twice by necessity: as a Python validator here (so `sailvl
validate`, the trainer and the workers refuse a bad spec with a precise message) and as a CEL rule in
the generated CRD (so the cluster refuses it too); tests evaluate both on the same manifests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic.alias_generators import to_camel

API_GROUP = "sailvl.io"
API_VERSION_NAME = "v1alpha1"
ApiVersion = Literal["sailvl.io/v1alpha1"]
API_VERSION: ApiVersion = "sailvl.io/v1alpha1"
assert f"{API_GROUP}/{API_VERSION_NAME}" == API_VERSION

# Resource names become parts of child names (`<name>-train-a<attempt>`, `<name>-vllm-<model>`), which
# Kubernetes caps at 63 characters: 40 leaves room for every suffix the operator appends.
MAX_NAME_LENGTH = 40
# A served model's name ends up in `<resource>-vllm-<model>`: 40 + 6 + 17 = 63.
MAX_SERVING_NAME_LENGTH = 17
DNS1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1035 = re.compile(DNS1035_PATTERN)
_DNS1123_LABEL = re.compile(DNS1123_LABEL_PATTERN)


class FieldError(ValueError):
    """A user mistake found by a cross-field validator, located below the model that raised it.

    `field` is the camelCase path relative to that model (`"microSize"`, `"steps[2].judge.model"`);
    the manifest loader joins it to the model's own location so the message names the full path.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CelRule:
    """A CEL rule the generated CRD carries in `x-kubernetes-validations` at this model's node."""

    rule: str
    message: str
    field_path: str | None = None  # relative JSON path the API server reports, e.g. ".microSize"


class ApiModel(BaseModel):
    """Base of every spec and status type: strict, closed, camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=True,
    )

    # CEL rules that mirror this model's cross-field validators (see module docstring).
    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    def to_manifest(self) -> dict[str, Any]:
        """The camelCase dictionary a manifest or a status patch carries (unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def count_set(model: BaseModel, fields: Iterable[str]) -> list[str]:
    """Names (as Python attributes) of the listed fields that are set (not None)."""
    return [name for name in fields if getattr(model, name) is not None]


def camel(name: str) -> str:
    return to_camel(name)


def exactly_one(model: BaseModel, fields: Iterable[str], where: str = "") -> None:
    """Raise unless exactly one of `fields` is set; the message lists the camelCase choices."""
    names = list(fields)
    chosen = count_set(model, names)
    if len(chosen) == 1:
        return
    options = ", ".join(camel(n) for n in names)
    prefix = f"{where}: " if where else ""
    if not chosen:
        raise ValueError(f"{prefix}exactly one of {options} must be set; found none")
    found = ", ".join(camel(n) for n in chosen)
    raise ValueError(f"{prefix}exactly one of {options} must be set; found {len(chosen)}: {found}")


def no_repeats(values: list[str]) -> list[str]:
    """A list used as a set: each value at most once (the CRD marks it `x-kubernetes-list-type: set`)."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise FieldError(f"[{i}]", f"{value!r} is listed twice")
    return values


def _check_name(value: str, limit: int, pattern: re.Pattern[str], what: str) -> str:
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters; found {len(value)} in {value!r}")
    if not pattern.fullmatch(value):  # as RE2 matches: "$" leaves no room for a trailing newline
        raise ValueError(
            f"{what} must consist of lower-case letters, digits and '-', start with a letter and end "
            f"with a letter or digit (DNS-1035); found {value!r}"
        )
    return value


def _resource_name(value: str) -> str:
    return _check_name(value, MAX_NAME_LENGTH, _DNS1035, "a resource name")


def _serving_name(value: str) -> str:
    return _check_name(value, MAX_SERVING_NAME_LENGTH, _DNS1035, "a served model name")


def _label_name(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        raise ValueError(
            f"must be a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters); found {value!r}"
        )
    return value


ResourceName = Annotated[
    str,
    AfterValidator(_resource_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": DNS1035_PATTERN}),
]
"""The name of a TrainStage, CurationRun or EvalSuite (DNS-1035, at most 40 characters)."""

ServingName = Annotated[
    str,
    AfterValidator(_serving_name),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_SERVING_NAME_LENGTH, "pattern": DNS1035_PATTERN}
    ),
]
"""The name of a served model (DNS-1035, at most 17 characters)."""

LabelName = Annotated[
    str,
    AfterValidator(_label_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL_PATTERN}),
]

# Kubernetes' own resource.Quantity grammar, as its OpenAPI publishes it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _quantity(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"a Kubernetes quantity (an integer or a string such as '500m', '64Gi') was expected; "
            f"found {type(value).__name__} {value!r}"
        )
    if isinstance(value, str) and not _QUANTITY.fullmatch(value):
        raise ValueError(f"a Kubernetes quantity such as '8', '500m' or '64Gi' was expected; found {value!r}")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"a quantity must not be negative; found {value}")
    return value


Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
"""A Kubernetes resource quantity: `8`, `"500m"`, `"64Gi"`."""

Timestamp = Annotated[
    str, Field(max_length=64), WithJsonSchema({"type": "string", "format": "date-time", "maxLength": 64})
]
"""An RFC 3339 time, as Kubernetes writes it (`2026-01-31T12:00:00Z`)."""

# Free text a user writes (prompts, criteria). Bounded so CEL rules over it stay cheap.
ShortText = Annotated[str, Field(min_length=1, max_length=512)]
LongText = Annotated[str, Field(min_length=1, max_length=8192)]
