"""What the API server does to a manifest between reading it and validating it, done here too so that
`sailvl validate` judges what the cluster judges.

- A `null` is pruned wherever the schema knows the field and gives it no `nullable` (the generated CRDs
  have none), exactly as `PruneNonNullableNullsWithoutDefaults` and defaulting do: the field then reads as
  absent and takes its default. Free-form fragments (`podTemplate`) keep their nulls, as the server keeps them.
- `status` is dropped on create: the status subresource owns it, so the server ignores what a manifest
  says there. That is worth a warning (a status written by hand is lost), never an error.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sailvl.api.meta import Resource


@cache
def _schema(resource: type[Resource]) -> dict[str, Any]:
    from sailvl.api.crd import crd_for  # crd imports the kinds, which import this module's callers

    schema: dict[str, Any] = crd_for(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def prune_nulls(doc: dict[str, Any], resource: type[Resource]) -> dict[str, Any]:
    """`doc` without the nulls the API server prunes from a `resource` (a copy; `doc` is left alone)."""
    pruned: dict[str, Any] = _pruned(doc, _schema(resource))
    metadata = pruned.get("metadata")
    if isinstance(metadata, dict):  # ObjectMeta is Go-typed: a null field is its zero value, i.e. unset
        pruned["metadata"] = {key: value for key, value in metadata.items() if value is not None}
    return pruned


def _pruned(value: Any, schema: dict[str, Any] | None) -> Any:
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if item is None and sub is not None and not sub.get("nullable"):
                continue
            out[key] = _pruned(item, sub)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [_pruned(item, items if isinstance(items, dict) else None) for item in value]
    return value


def as_created(doc: Any) -> tuple[Any, list[str]]:
    """`doc` as the API server stores it on create (without `status`), and a warning for each thing it drops."""
    if isinstance(doc, dict) and "status" in doc:
        kept = {key: value for key, value in doc.items() if key != "status"}
        return kept, ["the API server ignores status on create (the operator writes it); it is left out here too"]
    return doc, []
