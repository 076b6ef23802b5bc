"""URIs: the Python check and the CRD's pattern accept and refuse the same strings."""

from __future__ import annotations

import re

import pytest

from sailvl.api.uris import URI_PATTERN, check_uri, scheme_of

GOOD = [
    "s3://my-bucket/data/part-00000.parquet",
    "s3://my.bucket",
    "gs://bucket_1/checkpoints/",
    "hf://OpenGVLab/InternViT-300M-448px",
    "hf://Qwen/Qwen2.5-1.5B/sub/folder",
    "pvc://datasets/laion/shards",
    "pvc://models",
    "pvc://ckpt.v2/a/./b/.hidden/..x",
    "file:///data/x.jsonl",
    "file://relative/x",
    "synthetic://shapes",
    "synthetic://shapes?n=64&seed=0&split=train",
    "/abs/path/to/data",
    "relative/path",
    "checkpoints",
]
BAD = [
    "http://example.org/x",
    "ftp://x/y",
    "s3://",
    "s3://AB/x",
    "gs://b/x",
    "hf://onlyorg",
    "pvc://Bad/x",
    "pvc://data/../etc",
    "pvc://data/a/..",
    "pvc:///x",
    "synthetic://faces",
    "C:/windows/path",
    "with space/x",
    "",
]


@pytest.mark.parametrize("uri", GOOD)
def test_good_uris_pass_both_checks(uri: str) -> None:
    assert check_uri(uri) == uri
    assert re.match(URI_PATTERN, uri)


@pytest.mark.parametrize("uri", BAD)
def test_bad_uris_fail_both_checks(uri: str) -> None:
    with pytest.raises(ValueError):
        check_uri(uri)
    assert not re.match(URI_PATTERN, uri)


@pytest.mark.parametrize(
    ("uri", "scheme"), [("s3://b/x", "s3"), ("pvc://c/x", "pvc"), ("/x", "file"), ("synthetic://shapes", "synthetic")]
)
def test_scheme_of(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme
