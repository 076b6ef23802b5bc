"""Benchmark items from files in the VLMEvalKit TSV layout, or from the `synthetic://shapes` generator.

A file `<benchmark>.tsv` has a header row and one row per item: `index`, `image` (base64 of the encoded image; a
Python-style list of them for several images; or, to save space, the `index` of another row whose image it shares),
`question`, `answer`, optional `hint`, options `A`, `B`, ... and `category`, plus whatever columns the benchmark's
scorer reads. A file without an `image` column names files with `image_path` (relative to the TSV's folder).
Cells that pandas reads as missing (empty, `nan`, `None`, `N/A` ...) are missing here too, as in VLMEvalKit, and rows
without an image are skipped. Every error names the file, the row (counted from 1 after the header) and the column.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import io
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

# pandas' default missing-value strings: VLMEvalKit reads TSVs with pd.read_csv, so these cells are NaN there.
NA_VALUES = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
     "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip
_REFERENCE_MAX = 64  # an image cell this short is another row's index (VLMEvalKit's rule)
XLSX_CELL_LIMIT = 32767  # characters an .xlsx cell keeps (xlsxwriter cuts longer strings)


def as_scored(prediction: str) -> str:
    """A prediction as VLMEvalKit scores it: written to its `.xlsx` prediction file and read back with pandas, so
    cut at 32,767 characters, and `nan` when pandas reads the cell as missing (a blank reply, `None`, `N/A` ...)."""
    text = prediction[:XLSX_CELL_LIMIT]
    return "nan" if text in NA_VALUES else text


OPTION_LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BenchmarkFileError(ValueError):
    """A benchmark file that cannot be used; the message names the file and, where it applies, row and column."""

    def __init__(self, source: str, message: str, *, row: int | None = None, column: str | None = None) -> None:
        where = source + (f" row {row}" if row is not None else "") + (f" column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.source, self.row, self.column = source, row, column


@dataclass(frozen=True)
class Item:
    """One benchmark question: its `index` (the key of its prediction), images, and every other non-missing cell."""

    index: str
    row: int
    images: tuple[bytes, ...]
    fields: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, column: str) -> str:
        return self.fields[column]

    def get(self, column: str, default: str | None = None) -> str | None:
        return self.fields.get(column, default)

    @property
    def options(self) -> dict[str, str]:
        """The multiple-choice options present, in letter order."""
        return {letter: self.fields[letter] for letter in OPTION_LETTERS if letter in self.fields}


def read_tsv(path: Path, required: Iterable[str]) -> list[Item]:
    """Every item of the TSV at `path` that has an image; `required` columns must be in the header."""
    source = str(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise BenchmarkFileError(source, "no such file (expected a VLMEvalKit TSV named <benchmark>.tsv)") from None
    with handle:
        return parse_rows(_tsv_rows(handle, source, required), source, required, base_dir=path.parent)


def read_tsv_text(text: str, source: str, required: Iterable[str]) -> list[Item]:
    """`read_tsv` for a file already in memory (a remote data URI); image paths are not supported there."""
    rows = _tsv_rows(io.StringIO(text, newline=""), source, required)
    return parse_rows(rows, source, required, base_dir=None)


def _tsv_rows(handle: Iterable[str], source: str, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    csv.field_size_limit(sys.maxsize)  # a base64 image is far longer than csv's 128 KiB default
    reader = csv.reader(handle, delimiter="\t", quotechar='"')
    header = next(reader, None)
    if not header:
        raise BenchmarkFileError(source, "is empty; expected a header row (index, image, question, answer, ...)")
    if len(set(header)) != len(header):
        repeated = sorted({name for name in header if header.count(name) > 1})
        raise BenchmarkFileError(source, f"header names a column twice: {repeated}")
    check_columns(source, header, ("index", *required))
    for number, cells in enumerate(reader, start=1):
        if len(cells) != len(header):
            raise BenchmarkFileError(
                source, f"has {len(cells)} tab-separated cells; the header has {len(header)}", row=number
            )
        yield number, dict(zip(header, cells, strict=True))


def parse_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]], source: str, required: Iterable[str], *, base_dir: Path | None
) -> list[Item]:
    """Items from (row number, cells) pairs: checks columns and indices, decodes and checks every image."""
    required = ("index", *required)
    raw: list[tuple[int, dict[str, str]]] = []
    for number, cells in rows:
        if not raw:
            check_columns(source, list(cells), required)
        raw.append((number, {k: _cell(v) for k, v in cells.items() if _cell(v) not in NA_VALUES}))
    by_index: dict[str, tuple[int, dict[str, str]]] = {}
    for number, cells in raw:
        if "index" not in cells:
            raise BenchmarkFileError(source, "missing index", row=number, column="index")
        if cells["index"] in by_index:
            first = by_index[cells["index"]][0]
            raise BenchmarkFileError(source, f"repeats index {cells['index']!r} of row {first}", row=number)
        by_index[cells["index"]] = (number, cells)
    items = []
    for number, cells in raw:
        if "image" not in cells and "image_path" not in cells:
            continue  # VLMEvalKit skips rows without an image
        for column in required:
            if column not in cells:
                raise BenchmarkFileError(source, "is missing (a required cell)", row=number, column=column)
        images = _images(source, number, cells, by_index, base_dir)
        fields = {k: v for k, v in cells.items() if k not in ("index", "image")}
        items.append(Item(index=cells["index"], row=number, images=images, fields=fields))
    return items


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def check_columns(source: str, columns: list[str], required: Iterable[str]) -> None:
    """Every required column, and an image column, is in the header."""
    for column in required:
        if column not in columns:
            raise BenchmarkFileError(source, f"the header has no column {column!r}; found columns {columns}")
    if "image" not in columns and "image_path" not in columns:
        raise BenchmarkFileError(source, f"the header needs an 'image' or 'image_path' column; found columns {columns}")


def _images(
    source: str,
    number: int,
    cells: dict[str, str],
    by_index: Mapping[str, tuple[int, dict[str, str]]],
    base_dir: Path | None,
) -> tuple[bytes, ...]:
    if "image" not in cells:
        paths = _as_list(source, number, cells, "image_path")
        return tuple(_read_image_file(source, number, p, base_dir) for p in paths)
    value = cells["image"]
    if len(value) <= _REFERENCE_MAX:
        target = by_index.get(value)
        if target is None or len(target[1].get("image", "")) <= _REFERENCE_MAX:
            raise BenchmarkFileError(
                source,
                f"holds {value!r}, which is neither a base64 image nor the index of a row that has one",
                row=number,
                column="image",
            )
        number, cells = target
    encoded = _as_list(source, number, cells, "image")
    return tuple(_decode(source, number, text) for text in encoded)


def _as_list(source: str, number: int, cells: Mapping[str, str], column: str) -> list[str]:
    value = cells[column]
    if not (value.startswith("[") and value.endswith("]")):
        return [value]
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, list) or not parsed or not all(isinstance(x, str) for x in parsed):
        raise BenchmarkFileError(source, "starts with '[' but is not a list of strings", row=number, column=column)
    return parsed


def _decode(source: str, number: int, text: str) -> bytes:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BenchmarkFileError(
            source, f"is not valid base64 ({exc}); starts with {text[:24]!r}", row=number, column="image"
        ) from None
    _check_image(source, number, "image", data)
    return data


def _read_image_file(source: str, number: int, relative: str, base_dir: Path | None) -> bytes:
    if base_dir is None:
        raise BenchmarkFileError(
            source, "image_path needs the TSV on a local or mounted path; inline the images as base64", row=number
        )
    path = base_dir / relative
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}"
        raise BenchmarkFileError(source, message, row=number, column="image_path") from None
    _check_image(source, number, "image_path", data)
    return data


def _check_image(source: str, number: int, column: str, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only: cheap
            image_format = image.format
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchmarkFileError(
            source, f"does not hold an image ({len(data)} bytes; {exc})", row=number, column=column
        ) from None
    if image_format is None:
        raise BenchmarkFileError(source, "holds an image of unknown format", row=number, column=column)


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def image_mime(data: bytes) -> str:
    """The MIME type of an encoded image (for a data URI): the common signatures directly, others through PIL."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    with Image.open(io.BytesIO(data)) as image:
        return Image.MIME.get(image.format or "", "application/octet-stream")
