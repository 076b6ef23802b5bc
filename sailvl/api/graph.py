"""Checks across documents: duplicate resources and dependency cycles among the resources at hand.

A reference to a resource that is not at hand is not an error here (it may exist in the cluster).
"""

from __future__ import annotations

from collections.abc import Sequence

from sailvl.api.meta import Resource

Key = tuple[str, str, str]  # (namespace, kind, name)


def key_of(resource: Resource) -> Key:
    return (resource.namespace or "", resource.kind, resource.name)


def duplicates(resources: Sequence[Resource]) -> list[Key]:
    seen: set[Key] = set()
    repeated: list[Key] = []
    for resource in resources:
        key = key_of(resource)
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


def dependency_cycles(resources: Sequence[Resource]) -> list[list[Key]]:
    """Each cycle among the resources at hand, as the keys along it (first key repeated at the end)."""
    by_key = {key_of(r): r for r in resources}
    edges = {
        key: [(key[0], kind, name) for kind, name in r.references() if (key[0], kind, name) in by_key]
        for key, r in by_key.items()
    }
    cycles: list[list[Key]] = []
    state: dict[Key, int] = {}  # 1 visiting, 2 done
    stack: list[Key] = []

    def visit(node: Key) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def format_key(key: Key) -> str:
    namespace, kind, name = key
    return f"{kind}/{name}" + (f" (namespace {namespace})" if namespace else "")
