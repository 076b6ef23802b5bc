"""Validate objects against a generated CRD the way an API server would, without one.

OpenAPI value validation runs through jsonschema (Draft 4 keywords, which OpenAPI v3.0 uses, with
objects closed as a server with strict field validation treats them); defaults are applied first,
as the server does; list types (`set`, `map`) are checked; and every `x-kubernetes-validations` CEL
rule is compiled and evaluated with cel-python, transition rules (`oldSelf`) against an old object.
Values are typed from the schema, as Kubernetes types them (a `number` is a CEL double even when
written `1`).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import celpy
from celpy import celtypes
from jsonschema import Draft4Validator

_MISSING = object()


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def compile_rule(rule: str) -> None:
    _program(rule)


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return celpy.json_to_cel(value)
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        if "properties" in schema:
            props = schema["properties"]
            return celtypes.MapType(
                {
                    celtypes.StringType(k): to_cel(v, props.get(k, {"x-kubernetes-preserve-unknown-fields": True}))
                    for k, v in value.items()
                }
            )
        if isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
            return celtypes.MapType({celtypes.StringType(k): to_cel(v, sub) for k, v in value.items()})
        return celpy.json_to_cel(value)
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(value)
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.IntType(value)
    return celpy.json_to_cel(value)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for key, sub in schema["properties"].items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key])
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: apply_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


_IMPLICIT = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}


def schema_errors(schema: dict[str, Any], obj: Any) -> list[str]:
    """Errors of `obj` against a CRD's openAPIV3Schema (apiVersion, kind and metadata are always allowed)."""
    schema = {**schema, "properties": {**_IMPLICIT, **schema.get("properties", {})}}
    validator = Draft4Validator(_closed(schema))
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


def rule_failures(schema: dict[str, Any], new: Any, old: Any = _MISSING, path: str = "") -> list[str]:
    failures: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is _MISSING:
            continue
        activation = {"self": to_cel(new, schema)}
        if transition:
            activation["oldSelf"] = to_cel(old, schema)
        try:
            ok = bool(_program(rule["rule"]).evaluate(activation))
        except celpy.CELEvalError as exc:
            ok, rule = False, {**rule, "message": f"{rule['message']} (evaluation error: {exc.args[0]})"}
        if not ok:
            failures.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    if isinstance(new, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key in new:
                prior = old[key] if isinstance(old, dict) and key in old else _MISSING
                failures += rule_failures(sub, new[key], prior, f"{path}.{key}")
    elif isinstance(new, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in new.items():
            prior = old[key] if isinstance(old, dict) and key in old else _MISSING
            failures += rule_failures(schema["additionalProperties"], value, prior, f"{path}.{key}")
    elif isinstance(new, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        old_by_key = {}
        if keys and isinstance(old, list):  # only map lists correlate items across an update
            old_by_key = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
        for i, item in enumerate(new):
            prior = (
                old_by_key.get(tuple(item.get(k) for k in keys), _MISSING)
                if keys and isinstance(item, dict)
                else _MISSING
            )
            failures += rule_failures(schema["items"], item, prior, f"{path}[{i}]")
    return failures


def list_type_failures(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    failures: list[str] = []
    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    failures.append(f"{path}[{i}]: duplicate value {item!r}")
                seen.append(item)
        elif list_type == "map":
            keys = schema["x-kubernetes-list-map-keys"]
            seen_keys: list[tuple[Any, ...]] = []
            for i, item in enumerate(value):
                key = tuple(item.get(k) for k in keys) if isinstance(item, dict) else (item,)
                if key in seen_keys:
                    failures.append(f"{path}[{i}]: duplicate entry with key {key!r}")
                seen_keys.append(key)
        for i, item in enumerate(value):
            failures += list_type_failures(schema.get("items", {}), item, f"{path}[{i}]")
    elif isinstance(value, dict):
        props = schema.get("properties", {})
        for key, item in value.items():
            sub = props.get(key) or (
                schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
            )
            if sub:
                failures += list_type_failures(sub, item, f"{path}.{key}")
    return failures


def server_errors(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Everything an API server would refuse about `obj` (created, or updated from `old`)."""
    schema = root_schema(crd)
    new = apply_defaults(schema, obj)
    errors = schema_errors(schema, new)
    if errors:
        return errors  # the server stops at schema errors before running CEL
    errors += list_type_failures(schema, new)
    prior = apply_defaults(schema, old) if old is not None else _MISSING
    errors += rule_failures(schema, new, prior)
    return errors


def iter_rules(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, r) for r in schema.get("x-kubernetes-validations", [])]
    for key, sub in schema.get("properties", {}).items():
        found += iter_rules(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        found += iter_rules(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += iter_rules(schema["additionalProperties"], f"{path}.*")
    return found
