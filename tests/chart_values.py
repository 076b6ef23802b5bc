"""The chart's values as documented: every key of values.yaml with its `# --` comment, as a Markdown table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "sailvl"


def documented_keys(text: str) -> dict[str, str]:
    """Dotted key → its `# --` description, for every leaf or documented key of values.yaml."""
    docs: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    collecting = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending, collecting = [stripped[4:].strip()], True
            continue
        if stripped.startswith("#") and collecting:
            pending.append(stripped[1:].strip())
            continue
        collecting = False
        match = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            docs[".".join(k for _, k in stack)] = " ".join(pending)
            pending = []
    return docs


def leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [leaf for k, v in values.items() for leaf in leaves(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def values_table() -> str:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    docs = documented_keys(text)
    rows = ["| key | default | description |", "|---|---|---|"]
    for key, description in docs.items():
        node: Any = values
        for part in key.split("."):
            node = node[part]
        default = json.dumps(node)
        rows.append(f"| `{key}` | `{default}` | {description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(values_table(), end="")
