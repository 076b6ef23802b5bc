"""Reading manifests as kubectl reads them: YAML to JSON the way sigs.k8s.io/yaml (go-yaml's YAML 1.1 rules) does,
so `sailvl validate` sees exactly the object the API server will receive.

What that means for a plain (unquoted) scalar, as kubectl 1.35 converts it (tests check each against the real
kubectl binary):

- `y`, `yes`, `on`, `true` (any of their case forms) are true; `n`, `no`, `off`, `false` are false; `~`, `null`,
  an empty value are null;
- integers in any Go literal form (`017` and `0o17` octal, `0x1F`, `0b101`, `1_000`, `+12`); beyond int64 they
  become floats; a float with an integral value arrives as an integer (JSON carries `7`, not `7.0`);
- floats as Go parses them (`.5`, `1.`, `12e3`); a float beyond float64 (`1e400`) stays text, and `.inf` / `.nan`
  are refused: JSON has no such numbers;
- everything else is text: `1:30`, `2024-01-02`, `=`, `<<` as a value. `!!binary` is decoded to text;
- mapping keys become strings (`1`, `yes` become "1", "true"); a null or non-scalar key is refused.

Limits that keep a hostile or broken file from hanging or crashing the reader, each a clear `ReadError` naming the
place: nesting deeper than `MAX_DEPTH` levels, and go-yaml's own rule against alias bombs (more than 99% of a document's
values coming from aliases, less for a big one: kubectl refuses the same files).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 100  # a Kubernetes object nests a few dozen levels at most; kubectl's own reader stops near this
INT64 = (-(2**63), 2**63 - 1)
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE = frozenset({"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_SPECIAL_FLOAT = re.compile(r"^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")
# Go's strconv literals: an optional sign, digits with single underscores between them, 0x/0o/0b prefixes.
_INT = re.compile(r"^[-+]?(0[xX]_?[0-9a-fA-F]+(_[0-9a-fA-F]+)*|0[oO]_?[0-7]+(_[0-7]+)*|0[bB]_?[01]+(_[01]+)*"
                  r"|0_?[0-7]+(_[0-7]+)*|[1-9](_?[0-9])*|0)$")  # fmt: skip
# go-yaml's `yamlStyleFloat`, matched once underscores are removed ("08" is 8.0: not an int to Go, but a float).
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_STR = "tag:yaml.org,2002:"
_TAG_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}


class ReadError(yaml.YAMLError):
    """A manifest kubectl could not turn into JSON either; `path` is the field where it happened."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path, self.message = path, message


class _Composer(Composer):
    def compose_scalar_node(self, anchor: Any) -> ScalarNode:
        event = self.peek_event()  # type: ignore[attr-defined]  # the Parser mixed in beside it
        node: ScalarNode = super().compose_scalar_node(anchor)
        node.plain = event.tag in (None, "!") and bool(event.implicit[0])  # type: ignore[attr-defined]
        return node


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Composer, yaml.resolver.BaseResolver):
    """Parses and composes; resolution is ours (no implicit resolvers: every plain scalar is resolved below)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Composer.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)


def read_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream as the JSON value kubectl would send; raises yaml.YAMLError
    (a `ReadError` with the field's path where there is one)."""
    _check_depth(text)
    loader = _Loader(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _check_aliasing(node)
                value = _value(node, "")
                if value is not None:
                    documents.append(value)
        return documents
    finally:
        loader.dispose()


def _check_depth(text: str) -> None:
    """Nesting beyond MAX_DEPTH is refused from the event stream, before any recursion could overflow."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ReadError("", f"nested deeper than {MAX_DEPTH} levels (at line {line})")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_aliasing(root: Node) -> None:
    """go-yaml's guard against alias bombs, counted as it counts: every node it decodes (keys too, `<<` keys not)
    is one decode, and one inside an alias's expansion is also an alias decode; more than 100 alias decodes
    among more than 1000, at a ratio above `_allowed_alias_ratio`, is "excessive aliasing". The ratio only
    rises through an expansion, so checking before and after each is checking at every node."""
    definitions = _definitions(root)
    sizes = _expansion_sizes(root, definitions)

    decodes, aliased = 1, 0  # the document node
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, via_alias = stack.pop()
        decodes += 1
        if via_alias:
            expansion = sizes[id(node)]
            decodes, aliased = decodes + expansion, aliased + expansion
        if aliased > 100 and decodes > 1000 and aliased / decodes > _allowed_alias_ratio(decodes):
            raise ReadError("", "the document contains excessive aliasing (kubectl refuses it too)")
        if not via_alias:
            stack.extend((child, definitions[id(child)] != (id(node), i)) for i, child in reversed(_references(node)))


def _expansion_sizes(root: Node, definitions: dict[int, tuple[int, int]]) -> dict[int, int]:
    """How many decodes expanding each node costs (its own, and each alias's one besides its target's); refuses an
    anchor that contains itself, as go-yaml does, and aliases that nest values deeper than MAX_DEPTH."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack[-1]
        if id(node) in sizes:
            stack.pop()
            continue
        pending = [child for _, child in _references(node) if id(child) not in sizes]
        if id(node) not in open_:
            open_.add(id(node))
            for child in pending:
                if id(child) in open_:
                    line = child.start_mark.line + 1 if child.start_mark else "?"
                    raise ReadError("", f"an anchor's value contains an alias of itself (at line {line})")
            stack.extend(pending)
            continue
        sizes[id(node)] = 1 + sum(
            sizes[id(child)] + (definitions[id(child)] != (id(node), i)) for i, child in _references(node)
        )
        depths[id(node)] = (
            0
            if isinstance(node, ScalarNode)
            else 1 + max((depths[id(child)] for _, child in _references(node)), default=0)
        )
        if depths[id(node)] > MAX_DEPTH:  # aliases of aliases can nest deeper than the text does
            line = node.start_mark.line + 1 if node.start_mark else "?"
            raise ReadError("", f"aliases nest the document deeper than {MAX_DEPTH} levels (at line {line})")
        open_.discard(id(node))
        stack.pop()
    return sizes


def _allowed_alias_ratio(decodes: int) -> float:
    low, high = 400_000, 4_000_000
    if decodes <= low:
        return 0.99
    if decodes >= high:
        return 0.10
    return 0.99 - 0.89 * (decodes - low) / (high - low)


def _definitions(root: Node) -> dict[int, tuple[int, int]]:
    """Each node's first place in document order (parent id, reference index): its anchor; any other place
    that holds it is an alias."""
    first: dict[int, tuple[int, int]] = {id(root): (0, 0)}
    stack = [root]
    while stack:
        node = stack.pop()
        fresh = [(i, child) for i, child in _references(node) if id(child) not in first]
        for i, child in fresh:
            first.setdefault(id(child), (id(node), i))
        stack.extend(child for _, child in reversed(fresh))
    return first


def _references(node: Node) -> list[tuple[int, Node]]:
    """The nodes go-yaml decodes below `node`, in order, numbered: a `<<` key is not decoded, and a merged list's
    items are decoded but not the list."""
    if isinstance(node, SequenceNode):
        return list(enumerate(node.value))
    if not isinstance(node, MappingNode):
        return []
    out: list[tuple[int, Node]] = []
    for key, value in node.value:
        if isinstance(key, ScalarNode) and getattr(key, "plain", False) and key.value == "<<":
            out += [(len(out), v) for v in value.value] if isinstance(value, SequenceNode) else [(len(out), value)]
        else:
            out += [(len(out), key), (len(out) + 1, value)]
    return out


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _value(node: Node, path: str) -> Any:
    if isinstance(node, ScalarNode):
        return _scalar(node, path)
    if isinstance(node, SequenceNode):
        return [_value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode), node
    out: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.plain and key_node.value == "<<":  # type: ignore[attr-defined]
            for source in _merge_sources(value_node, path):
                merged |= {k: v for k, v in source.items() if k not in merged}
            continue
        key = _key(key_node, path)
        out[key] = _value(value_node, f"{path}.{key}" if path else key)
    return {**{k: v for k, v in merged.items() if k not in out}, **out}


def _merge_sources(node: Node, path: str) -> Iterator[dict[str, Any]]:
    nodes = node.value if isinstance(node, SequenceNode) else [node]
    for source in nodes:
        value = _value(source, path)
        if not isinstance(value, dict):
            raise ReadError(path or "<<", f"a merge (<<) takes a mapping or a list of mappings; found {value!r:.40}")
        yield value


def _key(node: Node, path: str) -> str:
    where = path or "(top level)"
    if not isinstance(node, ScalarNode):
        kind = "sequence" if isinstance(node, SequenceNode) else "mapping"
        raise ReadError(
            where, f"a mapping key must be a scalar (kubectl converts keys to JSON strings); found a {kind}"
        )
    value = _scalar(node, where)
    if value is None:
        raise ReadError(where, f"a mapping key cannot be null; found {node.value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(value: float) -> str:
    """A float as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it (which is how kubectl names such keys)."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _scalar(node: ScalarNode, path: str) -> Any:
    text, tag = node.value, node.tag
    if getattr(node, "plain", False):
        return _plain(text, path)
    if tag == _STR + "binary":
        try:
            return base64.b64decode("".join(text.split()), validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            raise ReadError(path, f"!!binary value is not base64; found {text[:40]!r}") from None
    if tag in (_STR + "int", _STR + "float", _STR + "bool", _STR + "null"):
        value = _plain(text, path)
        expected = _TAG_TYPES[tag.rsplit(":", 1)[1]]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            raise ReadError(path, f"cannot decode {text!r} as a {tag.replace(_STR, '!!')}")
        return value
    return text  # quoted, block, `!!str`, `!!timestamp` and any local tag: text


def _plain(text: str, path: str) -> Any:
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _SPECIAL_FLOAT.match(text):
        raise ReadError(path, f"{text} is not a JSON number (kubectl refuses it too)")
    if _INT.match(text):
        value = int(text.replace("_", ""), 0) if not _legacy_octal(text) else int(text.replace("_", ""), 8)
        if INT64[0] <= value <= INT64[1]:
            return value
        try:
            return float(value)
        except OverflowError:
            return text  # beyond float64 too: Go parses it as neither, so it stays text
    if _FLOAT.match(text.replace("_", "")):
        number = float(text.replace("_", ""))
        if math.isinf(number):
            return text  # out of float64's range: Go cannot parse it, so it stays text
        return int(number) if number.is_integer() and INT64[0] <= number <= INT64[1] else number
    return text


def _legacy_octal(text: str) -> bool:
    """`017`: a leading zero means octal to Go's ParseInt(s, 0, 64) (Python's int(s, 0) refuses it)."""
    digits = text.lstrip("+-")
    return len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB"
