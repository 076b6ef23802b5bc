"""The record every source yields, and the checks that turn a raw row into one with errors naming file, row, field.

A record (DESIGN §5) is `id`, `image` (encoded bytes) or `images`, `text` (alt text or caption), `conversations`
(`[{role, content}]` with `<image>` placeholders) and `meta` (scores, provenance). Row parsing here is pure: the
readers in `sources` hand it the decoded row and where it came from.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
# ShareGPT/LLaVA files write {"from": "human"|"gpt", "value": ...}; they are read as user/assistant turns.
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant"}
FIELD_NAMES = ("image", "text", "conversations")


class RecordError(ValueError):
    """A row that cannot be read as a record: names the file, the row and the field."""

    def __init__(self, file: str, row: int | str, field: str, problem: str) -> None:
        super().__init__(f"{file}: row {row}: field {field!r}: {problem}")
        self.file, self.row, self.field = file, row, field


@dataclass(frozen=True, kw_only=True)
class Record:
    id: str
    images: tuple[bytes, ...] = ()
    text: str | None = None
    conversations: list[dict[str, str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> bytes | None:
        """The image of a single-image record (None for text-only records)."""
        if len(self.images) > 1:
            raise ValueError(f"record {self.id!r} has {len(self.images)} images; read `images` instead of `image`")
        return self.images[0] if self.images else None

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN §5 layout: `image` for one image, `images` for several, absent fields left out."""
        out: dict[str, Any] = {"id": self.id}
        if len(self.images) == 1:
            out["image"] = self.images[0]
        elif self.images:
            out["images"] = list(self.images)
        if self.text is not None:
            out["text"] = self.text
        if self.conversations is not None:
            out["conversations"] = self.conversations
        out["meta"] = self.meta
        return out


@dataclass(frozen=True, kw_only=True)
class Fields:
    """Which column (or webdataset member extension) holds each part of a record, and which parts must be there."""

    image: str = "image"
    text: str = "text"
    conversations: str = "conversations"
    id: str = "id"
    meta: str = "meta"
    required: frozenset[str] = frozenset()  # of "image", "text", "conversations"

    def __post_init__(self) -> None:
        unknown = self.required - set(FIELD_NAMES)
        if unknown:
            raise ValueError(f"required fields must be among {', '.join(FIELD_NAMES)}; found {sorted(unknown)}")


ImageLoader = Callable[[str], bytes]
Fail = Callable[[str], RecordError]


def parse_row(
    row: Mapping[str, Any], fields: Fields, *, file: str, row_index: int | str, load: ImageLoader | None = None
) -> Record:
    """Check and convert one decoded row (a dict of column values).

    `load` reads an image given as a path (relative paths are the reader's to resolve); without it a path is an error.
    """

    def fail(name: str, problem: str) -> RecordError:
        return RecordError(file, row_index, name, problem)

    for part in fields.required:
        name = getattr(fields, part)
        if row.get(name) is None:
            raise fail(name, f"required ({part}) but missing; the row has {sorted(map(str, row))}")
    images = parse_images(row.get(fields.image), lambda p: fail(fields.image, p), load)
    if not images and fields.image == "image" and row.get("images") is not None:
        images = parse_images(row["images"], lambda p: fail("images", p), load)
    text = row.get(fields.text)
    if text is not None and not isinstance(text, str):
        raise fail(fields.text, f"expected a string; found {type(text).__name__}")
    conversations = parse_conversations(row.get(fields.conversations), lambda p: fail(fields.conversations, p))
    if text is None and conversations is None and not images:
        raise fail(fields.text, f"the row has none of {fields.image!r}, {fields.text!r}, {fields.conversations!r}")
    meta = row.get(fields.meta)
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as e:
            raise fail(fields.meta, f"expected a JSON object; found unparseable text ({e})") from None
    if meta is not None and not isinstance(meta, dict):
        raise fail(fields.meta, f"expected an object; found {type(meta).__name__}")
    rid = row.get(fields.id)
    if rid is not None and not isinstance(rid, str | int):
        raise fail(fields.id, f"expected a string or an integer; found {type(rid).__name__}")
    return Record(
        id=str(rid) if rid is not None else f"{file}#{row_index}",
        images=tuple(images),
        text=text,
        conversations=conversations,
        meta=meta or {},
    )


def parse_images(value: Any, fail: Fail, load: ImageLoader | None = None) -> list[bytes]:
    """Image bytes from bytes, `{"bytes": ...}` (Hugging Face datasets), base64 or data-URI text, or a list of those.

    Other text is a path, read with `load`.
    """
    if value is None:
        return []
    values = value if isinstance(value, list | tuple) else [value]
    out: list[bytes] = []
    for i, v in enumerate(values):
        if isinstance(v, dict) and ("bytes" in v or "path" in v):
            v = v.get("bytes") or v.get("path")
        if isinstance(v, bytes | bytearray | memoryview):
            out.append(bytes(v))
        elif isinstance(v, str) and v:
            out.append(_text_image(v, fail, load))
        else:
            where = f" (item {i})" if isinstance(value, list | tuple) else ""
            raise fail(f"expected encoded image bytes, base64 text or a path{where}; found {type(v).__name__}")
    return out


def _text_image(text: str, fail: Fail, load: ImageLoader | None) -> bytes:
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if not header.endswith(";base64"):
            raise fail(f"expected a base64 data URI (data:image/...;base64,...); found {header!r}")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise fail("the data URI's payload is not valid base64") from None
    if len(text) >= 64:  # shorter text is never a whole image, so it must be a path
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
    if load is None:
        raise fail(f"found a path ({text[:80]!r}) where this reader needs the image bytes themselves")
    try:
        return load(text)
    except FileNotFoundError:
        raise fail(f"the image file {text!r} does not exist") from None


def parse_conversations(value: Any, fail: Fail) -> list[dict[str, str]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise fail(
                f"expected a list of {{role, content}} turns or its JSON; found unparseable text ({e})"
            ) from None
    if not isinstance(value, list):
        raise fail(f"expected a list of {{role, content}} turns; found {type(value).__name__}")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise fail(f"turn {i}: expected an object with role and content; found {type(turn).__name__}")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise fail(f"turn {i}: role must be one of {', '.join(ROLES)} (or human/gpt); found {role!r}")
        if not isinstance(content, str):
            raise fail(f"turn {i}: content must be a string; found {type(content).__name__}")
        turns.append({"role": role, "content": content})
    return turns
