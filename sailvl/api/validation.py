"""`sailvl validate`: every document of every file checked, every problem reported at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sailvl.api.graph import dependency_cycles, duplicates, format_key, key_of
from sailvl.api.manifest import Document, Issue, load_documents
from sailvl.api.meta import Resource


@dataclass
class ValidationResult:
    documents: list[Document]

    @property
    def resources(self) -> list[Resource]:
        return [d.resource for d in self.documents if d.resource is not None]

    @property
    def failed(self) -> list[Document]:
        return [d for d in self.documents if d.issues]

    @property
    def ok(self) -> bool:
        return bool(self.documents) and not self.failed


def validate_paths(paths: Iterable[str | Path]) -> ValidationResult:
    documents = load_documents(paths)
    parsed = [d for d in documents if d.resource is not None]
    resources = [d.resource for d in parsed if d.resource is not None]
    by_key = {key_of(d.resource): d for d in parsed if d.resource is not None}
    for key in duplicates(resources):
        for doc in parsed:
            if doc.resource is not None and key_of(doc.resource) == key and doc is not by_key[key]:
                doc.issues.append(Issue("metadata.name", f"{format_key(key)} is defined more than once"))
    for cycle in dependency_cycles(resources):
        first, following = cycle[0], cycle[1]
        resource = by_key[first].resource
        assert resource is not None
        field = next(f for f, kind, name in resource.reference_fields() if (kind, name) == following[1:])
        if first == following:
            message = f"refers to this {first[1]} itself: it would wait for itself forever"
        else:
            message = f"refers to {format_key(following)}, which waits for this one: " + " -> ".join(
                format_key(k) for k in cycle
            )
        by_key[first].issues.append(Issue(field, message))
    return ValidationResult(documents)


def report(result: ValidationResult) -> str:
    """Human-readable lines: `file [doc N] Kind/name: field: message`, then a summary."""
    lines: list[str] = []
    for doc in result.documents:
        for warning in doc.warnings:
            lines.append(f"{doc.source} [doc {doc.index}] {doc.label}: warning: {warning}")
    for doc in result.failed:
        for issue in doc.issues:
            lines.append(f"{doc.source} [doc {doc.index}] {doc.label}: {issue}")
    files = len({d.source for d in result.documents})
    if not result.documents:
        lines.append("no documents found")
    elif result.failed:
        errors = sum(len(d.issues) for d in result.failed)
        lines.append(
            f"{errors} error{'s' * (errors != 1)} in {len(result.failed)} of {len(result.documents)} "
            f"document{'s' * (len(result.documents) != 1)} ({files} file{'s' * (files != 1)})"
        )
    else:
        kinds = Counter(r.kind for r in result.resources)
        summary = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        lines.append(f"{len(result.documents)} documents valid in {files} file{'s' * (files != 1)} ({summary})")
    return "\n".join(lines)
