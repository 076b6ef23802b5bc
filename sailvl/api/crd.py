"""CustomResourceDefinitions generated from the pydantic models: the models are the single source of truth.

pydantic writes a JSON schema; this module reshapes it into a Kubernetes structural schema (inlined
references, no nulls, OpenAPI v3.0 keywords, `x-kubernetes-*` extensions), adds each model's CEL
rules and the immutability transition rules, and refuses to emit anything that is not structural.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from sailvl.api.base import API_GROUP, API_VERSION_NAME, ApiModel
from sailvl.api.manifest import KINDS
from sailvl.api.meta import Resource

DEFAULT_CRD_DIR = Path("charts/sailvl/crds")
_DROP = {"title", "additionalProperties", "discriminator", "examples"}


class _KubeSchema(GenerateJsonSchema):
    """Adds each model's CEL rules to its schema node."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        out = super().model_schema(schema)
        cls = schema["cls"]
        for name, info in cls.model_fields.items():
            prop = out.get("properties", {}).get(info.alias or name)
            if info.default_factory is None or prop is None:
                continue
            value = info.get_default(call_default_factory=True, validated_data={})
            if isinstance(value, BaseModel):
                prop["default"] = {}  # the API server then fills in the nested defaults itself
            elif value:
                prop["default"] = value
        rules = getattr(cls, "cel_rules", ()) if issubclass(cls, ApiModel) else ()
        if rules:
            out["x-kubernetes-validations"] = [
                {"rule": r.rule, "message": r.message, **({"fieldPath": r.field_path} if r.field_path else {})}
                for r in rules
            ]
        return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model` (camelCase, inlined, no nulls)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_KubeSchema)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, model)


def _convert(node: dict[str, Any], defs: dict[str, Any], model: type[BaseModel] | None = None) -> dict[str, Any]:
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k in ("description", "default")}}
        return _convert(merged, defs)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
        inner = {**options[0], **{k: v for k, v in node.items() if k in ("description",)}}
        if node.get("default") is not None:
            inner["default"] = node["default"]
        return _convert(inner, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "description":
            out[key] = " ".join(value.split())  # docstrings wrap across lines; descriptions read as one paragraph
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs)
        else:
            out[key] = copy.deepcopy(value)
    extra = node.get("additionalProperties")
    if out.get("type") == "object" and "properties" not in out:
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = _convert(extra, defs)
        else:  # a free-form fragment such as podTemplate
            out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string" if all(isinstance(v, str) for v in out["enum"]) else "number"
    return _ordered(out)


_KEY_ORDER = ("description", "type", "format", "enum", "default", "minimum", "exclusiveMinimum", "maximum")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: description and type first, rules and properties last."""
    first = [k for k in _KEY_ORDER if k in node]
    last = [
        k for k in ("properties", "items", "additionalProperties", "required", "x-kubernetes-validations") if k in node
    ]
    middle = sorted(k for k in node if k not in first and k not in last)
    return {k: node[k] for k in [*first, *middle, *last]}


def _strip_status_defaults(node: dict[str, Any]) -> None:
    node.pop("default", None)
    for sub in node.get("properties", {}).values():
        _strip_status_defaults(sub)
    if isinstance(node.get("items"), dict):
        _strip_status_defaults(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        _strip_status_defaults(node["additionalProperties"])


def _add_immutability(spec: dict[str, Any], kind: str, fields: tuple[str, ...]) -> None:
    for dotted in fields:
        node = spec
        for part in dotted.split("."):
            node = node["properties"][part]
        node.setdefault("x-kubernetes-validations", []).append(
            {
                "rule": "self == oldSelf",
                "message": f"spec.{dotted} is immutable once set: it defines what the {kind} computes; "
                f"create a new {kind} to change it",
            }
        )


def crd_for(resource: type[Resource]) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one resource kind."""
    schema = openapi_schema(resource)
    props = schema["properties"]
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    }
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource."}
    props["metadata"] = {"type": "object", "description": "Standard object metadata."}
    _strip_status_defaults(props["status"])
    _add_immutability(props["spec"], resource.KIND, resource.IMMUTABLE_SPEC_FIELDS)
    schema["required"] = ["spec"]
    problems = structural_violations(schema)
    if problems:
        raise ValueError(f"{resource.KIND}: generated schema is not structural: " + "; ".join(problems))
    ordered = _ordered(schema)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{resource.PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "sailvl", "app.kubernetes.io/part-of": "sailvl"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": resource.KIND,
                "listKind": f"{resource.KIND}List",
                "plural": resource.PLURAL,
                "singular": resource.KIND.lower(),
                "shortNames": list(resource.SHORT_NAMES),
                "categories": ["sailvl"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION_NAME,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p, "description": d, **({"priority": pr} if pr else {})}
                        for n, p, t, d, pr in resource.PRINTER_COLUMNS
                    ],
                    "schema": {"openAPIV3Schema": ordered},
                }
            ],
        },
    }


def crd_filename(resource: type[Resource]) -> str:
    return f"{API_GROUP}_{resource.PLURAL}.yaml"


def render_crds() -> dict[str, str]:
    """File name to YAML text of every CRD, deterministic."""
    header = "# Generated by `sailvl crds` from sailvl.api; do not edit.\n"
    return {
        crd_filename(cls): header + yaml.safe_dump(crd_for(cls), sort_keys=False, width=100, allow_unicode=True)
        for cls in KINDS.values()
    }


def write_crds(directory: Path) -> list[Path]:
    """Write every CRD into `directory` atomically; returns the files whose content changed."""
    rendered = render_crds()  # everything is generated (and checked) before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for name, text in rendered.items():
        target = directory / name
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        changed.append(target)
    return changed


def stale_crds(directory: Path) -> list[str]:
    """Names of the CRD files in `directory` that are missing or differ from freshly generated ones."""
    return [
        name
        for name, text in render_crds().items()
        if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != text
    ]


_FORBIDDEN = ("$ref", "definitions", "$schema", "id", "patternProperties", "dependencies", "additionalItems", "const")


def structural_violations(node: dict[str, Any], path: str = "") -> list[str]:
    """Why `node` is not a structural schema (empty when it is), per the apiextensions rules."""
    problems: list[str] = []
    where = path or "<root>"
    for key in _FORBIDDEN:
        if key in node:
            problems.append(f"{where}: {key} is not allowed")
    if node.get("uniqueItems"):
        problems.append(f"{where}: uniqueItems: true is not allowed")
    free = node.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if "type" not in node and not (free or int_or_string):
        problems.append(f"{where}: type is missing")
    for junction in ("anyOf", "oneOf", "allOf"):
        for option in node.get(junction, []):
            allowed = int_or_string and junction == "anyOf" and set(option) == {"type"}
            if not allowed and set(option) & {"type", "description", "default", "additionalProperties", "nullable"}:
                problems.append(f"{where}: {junction} may not set type, description, default or nullable")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if isinstance(node.get("additionalProperties"), bool):
        problems.append(f"{where}: additionalProperties must be a schema")
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{where}: an array needs an items schema")
    for name, sub in node.get("properties", {}).items():
        problems += structural_violations(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += structural_violations(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_violations(node["additionalProperties"], f"{path}.*")
    return problems
