"""Is a watch behind the API server? Compare what a periodic list returns with what the watch has delivered.

kopf restarts a watch stream that goes quiet (the API server sends bookmarks every minute, so quiet means dead);
what no restart can show is a watch that is connected but not delivering: a resource that changed in the API
while its event never came. A quiet cluster must not look like that, so silence is not the signal: a resource
version that a list returns and the watch has not delivered is. Its lag is how long lists have kept finding the
resource ahead of the watch (from the first such list, through later versions, which a resource the operator
keeps writing to always has); any delivery for that resource clears it, as a healthy watch does within moments.
Resource versions are opaque: only equality is used.

Pure: the handlers report deliveries, the probe reports lists, `lag()` answers per kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass
class WatchLag:
    delivered: dict[Key, str] = field(default_factory=dict)
    """The last resource version the watch delivered per resource."""
    pending: dict[Key, tuple[str, float]] = field(default_factory=dict)
    """Resources whose listed version the watch has not delivered: (the latest such version, when a list first
    found the resource ahead of the watch)."""

    def deliver(self, kind: str, namespace: str, name: str, version: str | None, *, deleted: bool = False) -> None:
        key = (kind, namespace, name)
        self.pending.pop(key, None)
        if deleted:
            self.delivered.pop(key, None)
        elif version:
            self.delivered[key] = version

    def listed(self, kind: str, items: Iterable[Mapping[str, Any]], now: float) -> None:
        """A list of every resource of `kind` (in the namespaces served) as the API server has them at `now`."""
        seen: set[Key] = set()
        for item in items:
            meta = item.get("metadata") or {}
            key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            version = str(meta.get("resourceVersion") or "")
            seen.add(key)
            if self.delivered.get(key) == version:
                self.pending.pop(key, None)
            elif key not in self.pending:
                self.pending[key] = (version, now)
            else:  # still undelivered, perhaps a newer version by now: the clock runs from the first sighting
                self.pending[key] = (version, self.pending[key][1])
        for key in [k for k in self.pending if k[0] == kind and k not in seen]:
            del self.pending[key]  # gone from the API; its deletion event settles the rest

    def lag(self, kind: str, now: float) -> float:
        """Seconds the oldest undelivered version of `kind` has been listed (0 when the watch is current)."""
        ages = [now - since for (k, _, _), (_, since) in self.pending.items() if k == kind]
        return max(ages, default=0.0)
