"""Reading manifests: YAML documents in, typed resources or located errors out.

Every error names the field path in the manifest's own camelCase spelling (`spec.optimizer.lr`,
`spec.steps[1].judge.model`), what was expected and what was found, so a person can fix the file
without reading code.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sailvl.api.admission import as_created, prune_nulls
from sailvl.api.base import API_VERSION, FieldError
from sailvl.api.curationrun import CurationRun
from sailvl.api.evalsuite import EvalSuite
from sailvl.api.meta import Resource
from sailvl.api.reading import read_documents
from sailvl.api.trainstage import TrainStage

KINDS: dict[str, type[Resource]] = {cls.KIND: cls for cls in (TrainStage, CurationRun, EvalSuite)}
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Issue:
    """One problem in one document: where (`spec.optimizer.lr`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(ValueError):
    """A document that is not a valid sailvl resource; `issues` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


def load_yaml(text: str) -> list[Any]:
    """All documents of a YAML stream as kubectl sends them (`sailvl.api.reading`; empty documents dropped);
    raises yaml.YAMLError."""
    return read_documents(text)


def parse_resource(doc: Any) -> Resource:
    """Validate one document as a sailvl resource; raises ManifestError listing every problem."""
    if not isinstance(doc, dict):
        raise ManifestError([Issue("", f"a document must be a mapping; found {type(doc).__name__}")])
    issues: list[Issue] = []
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != API_VERSION:
        found = "nothing" if api_version is None else repr(api_version)
        issues.append(Issue("apiVersion", f"expected {API_VERSION!r}; found {found}"))
    if not isinstance(kind, str) or kind not in KINDS:
        found = "nothing" if kind is None else repr(kind)
        issues.append(Issue("kind", f"expected one of {', '.join(KINDS)}; found {found}"))
    if issues or not isinstance(kind, str):
        raise ManifestError(issues)
    cls = KINDS[kind]
    doc = prune_nulls(doc, cls)
    try:
        # Wire names only: the API server knows `globalSize`, never `global_size`.
        return cls.model_validate(doc, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ManifestError(_wrong_kind(doc, kind) + issues_from(exc, cls)) from None


def _wrong_kind(doc: dict[str, Any], kind: str) -> list[Issue]:
    """An issue at `kind` when the document is a valid resource of another kind (a body under the wrong kind)."""
    for other, cls in KINDS.items():
        if other == kind:
            continue
        try:
            cls.model_validate(prune_nulls({**doc, "kind": other}, cls), by_alias=True, by_name=False)
        except ValidationError:
            continue
        return [Issue("kind", f"is {kind!r}, but the document is a valid {other}: did you mean kind: {other}?")]
    return []


def issues_from(exc: ValidationError, root: type[BaseModel]) -> list[Issue]:
    """Turn pydantic's errors into manifest-path issues with expected and found values."""
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        message = err["msg"]
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            loc += _split_path(cause.field)
            message = cause.message
        elif err["type"] in ("value_error", "assertion_error"):
            message = (
                message.split(", ", 1)[1] if message.startswith(("Value error, ", "Assertion failed, ")) else message
            )
        elif err["type"] == "extra_forbidden":
            message = _unknown_field_message(root, loc)
        elif err["type"] == "missing":
            message = "required field is missing"
        else:
            found = err.get("input")
            if not isinstance(found, dict | list) and "found" not in message:
                message = f"{message}; found {found!r}" if found is not None else f"{message}; found null"
        issues.append(Issue(format_path(loc), message))
    return issues


def format_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts


def _unknown_field_message(root: type[BaseModel], loc: list[str | int]) -> str:
    model = _model_at(root, loc[:-1])
    name = str(loc[-1])
    if model is None:
        return "unknown field"
    allowed = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field {name!r}{hint}; expected one of: {', '.join(allowed)}"


def _model_at(root: type[BaseModel], loc: list[str | int]) -> type[BaseModel] | None:
    """The model class found by following `loc` (aliases, list indices, dict keys) from `root`."""
    current: Any = root
    for part in loc:
        current = _unwrap(current, want_item=isinstance(part, int))
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {f.alias or n: f for n, f in current.model_fields.items()}
            field_info = by_alias.get(part) or current.model_fields.get(part)
            if field_info is None:
                return None
            current = field_info.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current, want_item=False)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any, *, want_item: bool) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        elif origin is list and want_item:
            tp = typing.get_args(tp)[0]
            want_item = False
        else:
            return tp


@dataclass
class Document:
    """One document of one file, parsed or not."""

    source: str
    index: int
    raw: Any
    resource: Resource | None = None
    issues: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def label(self) -> str:
        kind = self.raw.get("kind", "?") if isinstance(self.raw, dict) else "?"
        meta = self.raw.get("metadata") if isinstance(self.raw, dict) else None
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        return f"{kind}/{name}"


def manifest_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files named, and the manifest files under the folders named (recursively, sorted)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        else:
            yield path


def load_documents(paths: Iterable[str | Path]) -> list[Document]:
    """Every document of every file, each validated; problems are recorded, never raised."""
    documents: list[Document] = []
    for path in manifest_files(paths):
        source = str(path)
        try:
            raws = load_yaml(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            documents.append(Document(source, 0, None, issues=[Issue("", "no such file or folder")]))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            documents.append(Document(source, 0, None, issues=[Issue("", f"cannot read: {exc}")]))
            continue
        except yaml.YAMLError as exc:
            documents.append(Document(source, 0, None, issues=[Issue("", f"not valid YAML: {exc}")]))
            continue
        for index, submitted in enumerate(_expand_lists(raws)):
            raw, dropped = as_created(submitted)
            doc = Document(source, index, raw, warnings=[Issue("status", w) for w in dropped])
            try:
                doc.resource = parse_resource(raw)
            except ManifestError as exc:
                doc.issues = exc.issues
            documents.append(doc)
    return documents


def _expand_lists(raws: list[Any]) -> Iterator[Any]:
    """`kind: List` documents (as `kubectl get -o yaml` writes them) stand for their items."""
    for raw in raws:
        if isinstance(raw, dict) and raw.get("kind") == "List" and isinstance(raw.get("items"), list):
            yield from raw["items"]
        else:
            yield raw
