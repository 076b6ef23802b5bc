"""The dependency graph of the resources at hand: dangling references and cycles are errors that name them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sailvl.api.graph import dependency_cycles, format_key
from sailvl.api.meta import Resource

Key = tuple[str, str]  # (kind, name)


class GraphError(ValueError):
    pass


@dataclass(frozen=True)
class Graph:
    resources: dict[Key, Resource]
    needs: dict[Key, tuple[Key, ...]]  # what each resource waits for

    def order(self) -> list[Key]:
        """Every resource after everything it needs; ties in the order the files gave them."""
        position = {key: i for i, key in enumerate(self.resources)}
        done: list[Key] = []
        placed: set[Key] = set()
        while len(done) < len(self.resources):
            ready = [k for k in self.resources if k not in placed and all(n in placed for n in self.needs[k])]
            assert ready, "cycles are refused when the graph is built"
            ready.sort(key=position.__getitem__)
            done.append(ready[0])
            placed.add(ready[0])
        return done

    def dependents(self, key: Key) -> list[Key]:
        """Everything that waits on `key`, directly or not."""
        out: list[Key] = []
        frontier = [key]
        while frontier:
            current = frontier.pop()
            for other, needs in self.needs.items():
                if current in needs and other not in out:
                    out.append(other)
                    frontier.append(other)
        return out


def build_graph(resources: Sequence[Resource]) -> Graph:
    """The graph of `resources`; every reference must name a resource among them."""
    by_key: dict[Key, Resource] = {}
    for resource in resources:
        key = (resource.kind, resource.name)
        if key in by_key:
            raise GraphError(f"{resource.kind}/{resource.name} is defined more than once")
        by_key[key] = resource
    problems = []
    needs: dict[Key, tuple[Key, ...]] = {}
    for key, resource in by_key.items():
        refs = tuple(dict.fromkeys(resource.references()))
        for ref in refs:
            if ref not in by_key:
                problems.append(
                    f"{key[0]}/{key[1]} refers to {ref[0]}/{ref[1]}, which is not among the files given "
                    "(a local run needs every resource it depends on)"
                )
        needs[key] = refs
    for cycle in dependency_cycles(list(by_key.values())):
        problems.append("dependency cycle: " + " -> ".join(format_key(k) for k in cycle))
    if problems:
        raise GraphError("; ".join(problems))
    return Graph(by_key, needs)
