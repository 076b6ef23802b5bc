"""Where data and checkpoints live: the URI schemes sailvl understands, checked for form.

The Python check gives a precise message; `URI_PATTERN` is the same grammar as one regular expression
for the CRD, and a test keeps the two in agreement over a table of URIs.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl

from pydantic import AfterValidator, WithJsonSchema

SCHEMES = ("s3", "gs", "hf", "pvc", "file", "synthetic")
SYNTHETIC_GENERATORS = ("shapes",)
MAX_URI_LENGTH = 2048

_BUCKET = r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]"
_CLAIM = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_HF_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATH_TAIL = r"(/[^\s]*)?"
# A path segment other than `..` (RE2, which Kubernetes uses, has no lookahead).
_SAFE_SEGMENT = r"([^/\s.][^/\s]*|\.|\.[^/\s.][^/\s]*|\.\.[^/\s]+)?"
URI_PATTERN = (
    r"^("
    rf"(s3|gs)://{_BUCKET}{_PATH_TAIL}"
    rf"|hf://{_HF_PART}/{_HF_PART}{_PATH_TAIL}"
    rf"|pvc://{_CLAIM}(/{_SAFE_SEGMENT})*"
    r"|file:///?[^\s]+"
    rf"|synthetic://({'|'.join(SYNTHETIC_GENERATORS)})(\?[^\s]*)?"
    r"|[^:\s]+"
    r")$"
)
_URI = re.compile(URI_PATTERN)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(uri: str) -> str:
    """The scheme of `uri`, or `"file"` for a plain path."""
    match = _SCHEME.match(uri)
    return match.group(1) if match else "file"


def check_uri(uri: str) -> str:
    """Return `uri` if it is well formed; raise ValueError saying what is wrong otherwise."""
    if not uri:
        raise ValueError("a URI was expected; found an empty string")
    if len(uri) > MAX_URI_LENGTH:
        raise ValueError(f"a URI must be at most {MAX_URI_LENGTH} characters; found {len(uri)}")
    if any(ch.isspace() for ch in uri):
        raise ValueError(f"a URI must not contain whitespace; found {uri!r}")
    match = _SCHEME.match(uri)
    if not match:
        if ":" in uri:
            raise ValueError(
                f"expected a URI with one of the schemes {', '.join(s + '://' for s in SCHEMES)} "
                f"or a plain path without ':'; found {uri!r}"
            )
        return uri
    scheme, rest = match.group(1), uri[match.end() :]
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown URI scheme {scheme + '://'!r}; expected one of "
            f"{', '.join(s + '://' for s in SCHEMES)} or a plain path; found {uri!r}"
        )
    if scheme in ("s3", "gs"):
        bucket = rest.split("/", 1)[0]
        if not re.fullmatch(_BUCKET, bucket):
            raise ValueError(
                f"{scheme}:// needs a bucket name of 3-63 lower-case letters, digits, '.', '_' or '-' "
                f"({scheme}://<bucket>/<path>); found {uri!r}"
            )
    elif scheme == "hf":
        parts = rest.split("/")
        if len(parts) < 2 or not all(re.fullmatch(_HF_PART, p) for p in parts[:2]):
            raise ValueError(f"hf:// needs an organisation and a repository (hf://<org>/<repo>[/path]); found {uri!r}")
    elif scheme == "pvc":
        claim, _, path = rest.partition("/")
        if not re.fullmatch(_CLAIM, claim) or len(claim) > 253:
            raise ValueError(
                "pvc:// needs a PersistentVolumeClaim name (lower-case letters, digits, '-' and '.') "
                f"as in pvc://<claim>/<path>; found claim {claim!r} in {uri!r}"
            )
        if ".." in path.split("/"):
            raise ValueError(f"a pvc:// path must stay inside its claim ('..' is not allowed); found {uri!r}")
    elif scheme == "file":
        if not rest:
            raise ValueError(f"file:// needs a path; found {uri!r}")
    elif scheme == "synthetic":
        generator, _, query = rest.partition("?")
        if generator not in SYNTHETIC_GENERATORS:
            raise ValueError(
                f"unknown synthetic generator {generator!r}; expected one of "
                f"{', '.join('synthetic://' + g for g in SYNTHETIC_GENERATORS)}; found {uri!r}"
            )
        try:
            parse_qsl(query, keep_blank_values=False, strict_parsing=bool(query))
        except ValueError:
            raise ValueError(f"synthetic:// parameters must read key=value&key=value; found {query!r}") from None
    if not _URI.fullmatch(uri):  # the CRD's pattern must accept whatever passed the checks above
        raise ValueError(f"malformed URI {uri!r}")
    return uri


Uri = Annotated[
    str,
    AfterValidator(check_uri),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_URI_LENGTH, "pattern": URI_PATTERN}),
]
"""`s3://`, `gs://`, `hf://org/repo`, `pvc://<claim>/<path>`, `file://`, a plain path, or `synthetic://shapes?...`."""


def is_synthetic(uri: str) -> bool:
    return uri.startswith("synthetic://")
