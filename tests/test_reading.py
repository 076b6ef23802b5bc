"""Manifests are read as kubectl reads them: every value of a corpus of YAML oddities converts to the same JSON as the
real kubectl 1.35 binary converts it (`kubectl label --local -f FILE -o json` runs its YAML-to-JSON reading with no
cluster), what kubectl refuses is refused with the field named, and hostile files are refused without a crash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sailvl.api.reading import MAX_DEPTH, ReadError, read_documents
from tests.tools import tool

VALUES = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "NO", "on", "On", "off", "OFF", "true", "True", "FALSE",
    "~", "null", "Null", "NULL", "",
    "0", "-0", "00", "017", "0o17", "0O17", "0x1F", "0X1f", "0b101", "1_000", "+12", "-12", "0_17",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "1.5", ".5", "1.", "-1.", "1e3", "12e3", "1.0e+3", "1E-4", "1e-4", "0.0", "7.0", "1_000.5", "1e400", "-1e400",
    "1:30", "1:30:00", "2024-01-02", "2024-01-02T10:00:00Z", "1.5.3", "=", "<<", "-inf", "inf", "nan", "NaN",
    "'007'", '"y"', "!!str 12", "!!int '12'", "!!float 3", "!!bool yes", "!!binary aGVsbG8=", "!!timestamp 2024-01-02",
    "!foo bar", "|\n    block\n", ">-\n    folded\n    text\n", "abc", "a b", "é", "1 2", "0x", "0b2", "08", "09.5",
    "18446744073709551616", "9" * 400,
]  # fmt: skip
KEYS = ["1", "yes", "no", "1.5", "0x1F", "1e3", "'q'", "true", "Off", "017", "-1"]
REFUSED = {
    "inf value": "v: .inf",
    "nan value": "v: .NaN",
    "null key": "~: v",
    "null key spelled": "null: v",
    "null by tag": "v: !!null x",
}


def _document(body: str, name: str) -> str:
    return f"apiVersion: v1\nkind: Probe\nmetadata:\n  name: {name}\nspec:\n" + "".join(
        f"  {line}\n" for line in body.splitlines()
    )


def _kubectl(text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / "probe.yaml"
    path.write_text(text)
    command = [str(tool("kubectl")), "label", "--local", "-f", str(path), "seen=yes", "-o", "json"]
    return subprocess.run(command, capture_output=True, text=True, check=False, env={"KUBECONFIG": "/dev/null"})


def _as_server_reads(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _specs(output: str) -> list[Any]:
    """The spec of each object kubectl printed (one JSON object after another)."""
    decoder, position, specs = json.JSONDecoder(), 0, []
    while position < len(output.rstrip()):
        body, position = decoder.raw_decode(output, position)
        specs += [item["spec"] for item in body["items"]] if body.get("kind") == "List" else [body["spec"]]
        while position < len(output) and output[position].isspace():
            position += 1
    return specs


def test_every_value_reads_as_kubectl_reads_it(tmp_path: Path) -> None:
    text = "---\n".join(_document(f"v: {value}", f"v{i}") for i, value in enumerate(VALUES))
    done = _kubectl(text, tmp_path)
    assert done.returncode == 0, done.stderr
    # An integer beyond int64 is a float to the API server's JSON decoder, however kubectl prints it.
    theirs = [_as_server_reads(spec.get("v")) for spec in _specs(done.stdout)]
    ours = [doc["spec"].get("v") for doc in read_documents(text)]
    differ = [(v, o, t) for v, o, t in zip(VALUES, ours, theirs, strict=True) if o != t or type(o) is not type(t)]
    assert differ == [], differ


def test_every_key_reads_as_kubectl_reads_it(tmp_path: Path) -> None:
    text = "---\n".join(_document(f"{key}: v", f"k{i}") for i, key in enumerate(KEYS))
    done = _kubectl(text, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [list(doc["spec"]) for doc in read_documents(text)] == [list(spec) for spec in _specs(done.stdout)]


def test_aliases_and_merges_read_as_kubectl_reads_them(tmp_path: Path) -> None:
    body = "base: &b {a: 1, b: 2}\nlist: &l [x, y]\nagain: *l\nmerged:\n  <<: *b\n  b: 3\n  c: 4"
    text = _document(body, "aliases")
    done = _kubectl(text, tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_documents(text)[0]["spec"] == _specs(done.stdout)[0]


@pytest.mark.parametrize(("case", "body"), REFUSED.items(), ids=REFUSED)
def test_what_kubectl_refuses_is_refused_with_the_field(case: str, body: str, tmp_path: Path) -> None:
    text = _document(body, "refused")
    assert _kubectl(text, tmp_path).returncode != 0
    with pytest.raises(ReadError, match=r"^spec(\.v)?: "):
        read_documents(text)


def test_a_complex_key_is_refused_with_its_place() -> None:
    with pytest.raises(ReadError, match=r"^spec\.podTemplate: a mapping key must be a scalar .* found a sequence"):
        read_documents("spec:\n  podTemplate:\n    ? [a, b]\n    : 1\n")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = "x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    with pytest.raises(ReadError, match=rf"nested deeper than {MAX_DEPTH} levels"):
        read_documents(deep)
    very_deep = "x: " + "[" * 5000 + "]" * 5000  # far past Python's recursion limit
    with pytest.raises(ReadError, match="nested deeper"):
        read_documents(very_deep)
    assert read_documents("x: " + "[" * 50 + "]" * 50)  # deep, but within the limit


def _anchors(levels: int, width: int) -> str:
    """`levels` anchors, each a list of `width` aliases of the one before: width**levels values."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


ALIASING = {
    **{f"{levels} levels of {width}": _anchors(levels, width) for levels in (3, 4, 5) for width in (3, 5, 9, 10)},
    "a map bomb": "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}\n"
    + "\n".join(f"m{i}: &m{i} {{{', '.join(f'k{j}: *m{i - 1}' for j in range(10))}}}" for i in (1, 2, 3)),
    "many small aliases": "base: &b [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]\n"
    + "\n".join(f"k{i}: *b" for i in range(60)),
    "many merges": "base: &b {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}\n"
    + "\n".join(f"k{i}: {{<<: *b, z: 1}}" for i in range(150)),
    "an anchor containing itself": "a: &a [x, *a]",
}


@pytest.mark.parametrize("body", ALIASING.values(), ids=ALIASING)
def test_aliasing_is_refused_exactly_when_kubectl_refuses_it(body: str, tmp_path: Path) -> None:
    """go-yaml's alias-bomb rule (a ratio of alias-expanded values, not a size) is counted as go-yaml counts it."""
    text = _document(body, "aliases")
    done = _kubectl(text, tmp_path)
    if done.returncode == 0:
        assert read_documents(text)[0]["spec"] == _specs(done.stdout)[0]
    else:
        assert "aliasing" in done.stderr or "contains itself" in done.stderr, done.stderr
        with pytest.raises(ReadError, match=r"excessive aliasing|contains an alias of itself"):
            read_documents(text)


def test_aliases_nesting_past_the_depth_limit_are_refused_not_a_crash() -> None:
    chain = "a0: &a0 [x]\n" + "\n".join(f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 3000))
    with pytest.raises(ReadError, match=f"aliases nest the document deeper than {MAX_DEPTH} levels"):
        read_documents(chain)


def test_the_reader_is_the_yaml_error_callers_know() -> None:
    assert issubclass(ReadError, yaml.YAMLError)
    with pytest.raises(yaml.YAMLError):
        read_documents("a: [unclosed")
