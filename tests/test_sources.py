"""Sources: parquet, jsonl and webdataset readers on files written here, synthetic://, and errors naming the spot."""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sailvl.api.common import DataRef
from sailvl.data.records import Fields, Record, RecordError
from sailvl.data.sources import Source, SourceError, SyntheticSource, expand_braces, open_source, shards_of_worker
from sailvl.data.synthetic import generate, parse_synthetic_uri


@pytest.fixture(scope="module")
def records() -> list[Record]:
    """Ten image records with text, conversations and meta (the first five captions, the rest conversations)."""
    captions = parse_synthetic_uri("synthetic://shapes?n=5&seed=4&split=reference&size=96")
    chats = parse_synthetic_uri("synthetic://shapes?n=5&seed=4&split=sft-instruction&size=96")
    return [generate(captions, i) for i in range(5)] + [generate(chats, i) for i in range(5)]


def _row(r: Record) -> dict[str, object]:
    return {
        "id": r.id,
        "image": r.image,
        "text": r.text,
        "conversations": json.dumps(r.conversations) if r.conversations else None,
        "meta": json.dumps(r.meta),
    }


def write_parquet(path: Path, records: list[Record], row_group_size: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([_row(r) for r in records]), path, row_group_size=row_group_size)


def write_jsonl(path: Path, records: list[Record], *, gz: bool = False) -> None:
    lines = []
    for r in records:
        row = _row(r) | {"image": base64.b64encode(r.image or b"").decode(), "conversations": r.conversations}
        lines.append(json.dumps(row) + "\n\n")  # blank lines are allowed and are not rows
    data = "".join(lines).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def wds_members(records: list[Record]) -> list[tuple[str, bytes]]:
    members = []
    for r in records:
        key = f"samples/{r.id}"
        members.append((f"{key}.png", r.image or b""))
        if r.text:
            members.append((f"{key}.txt", r.text.encode()))
        members.append((f"{key}.json", json.dumps({"conversations": r.conversations, **r.meta}).encode()))
    return members


def _same(got: list[Record], want: list[Record]) -> None:
    assert [g.id for g in got] == [w.id for w in want]
    for g, w in zip(got, want, strict=True):
        assert (g.images, g.text, g.conversations) == (w.images, w.text, w.conversations)
        assert g.meta == w.meta


def _read_all(source: Source) -> list[Record]:
    return list(source)


# --- the three formats ------------------------------------------------------------------------------------------
def test_parquet_folder(tmp_path: Path, records: list[Record]) -> None:
    write_parquet(tmp_path / "part-00000.parquet", records[:6])
    write_parquet(tmp_path / "part-00001.parquet", records[6:])
    (tmp_path / "_manifest.json").write_text("{}")
    (tmp_path / ".part-00002.parquet.partial").write_bytes(b"half")
    source = open_source(str(tmp_path), format="parquet")
    assert [Path(s).name for s in source.shards()] == ["part-00000.parquet", "part-00001.parquet"]
    assert [source.blocks(s) for s in source.shards()] == [(2, 2, 2), (2, 2)]
    _same(_read_all(source), records)
    shard = source.shards()[0]
    for row in random.Random(0).sample(range(6), 6):  # random access across row groups
        assert source.get(shard, row) == next(r for i, r in enumerate(source.read(shard)) if i == row)


def test_jsonl_with_base64_images_and_gzip(tmp_path: Path, records: list[Record]) -> None:
    write_jsonl(tmp_path / "a.jsonl", records[:4])
    write_jsonl(tmp_path / "b.jsonl.gz", records[4:], gz=True)
    source = open_source(f"file://{tmp_path}", format="jsonl")
    assert [source.rows(s) for s in source.shards()] == [4, 6]
    _same(_read_all(source), records)
    for shard in source.shards():
        rows = list(source.read(shard))
        for row in reversed(range(len(rows))):
            assert source.get(shard, row) == rows[row]


def test_jsonl_images_as_relative_paths_and_sharegpt_turns(tmp_path: Path, records: list[Record]) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.png").write_bytes(records[5].image or b"")
    conversations = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A star."}]
    (tmp_path / "llava.jsonl").write_text(json.dumps({"id": 7, "image": "img/0.png", "conversations": conversations}))
    (record,) = _read_all(open_source(str(tmp_path / "llava.jsonl"), format="jsonl"))
    assert record.id == "7" and record.image == records[5].image
    assert record.conversations == [
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "A star."},
    ]


def test_webdataset_shards_by_brace_range(tmp_path: Path, records: list[Record]) -> None:
    write_tar(tmp_path / "shard-000.tar", wds_members(records[:5]))
    write_tar(tmp_path / "shard-001.tar", wds_members(records[5:]))
    source = open_source(str(tmp_path / "shard-{000..001}.tar"), format="webdataset")
    assert len(source.shards()) == 2 and [source.rows(s) for s in source.shards()] == [5, 5]
    got = _read_all(source)
    assert [g.id for g in got] == [f"samples/{r.id}" for r in records]
    for g, w in zip(got, records, strict=True):
        assert (g.image, g.text, g.conversations) == (w.image, w.text, w.conversations)
        assert g.meta == w.meta
    shard = source.shards()[1]
    assert source.get(shard, 3) == got[8] and source.get(shard, 0) == got[5]


def test_webdataset_gzipped_tar_and_mapped_extensions(tmp_path: Path, records: list[Record]) -> None:
    members = [(f"k{i}.jpg", r.image or b"") for i, r in enumerate(records[:3])]
    members += [(f"k{i}.caption.txt", (r.text or "").encode()) for i, r in enumerate(records[:3])]
    members.sort()
    plain = tmp_path / "x.tar"
    write_tar(plain, members)
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    plain.unlink()
    ref = DataRef.model_validate({"uri": str(tmp_path), "format": "webdataset", "textField": "caption.txt"})
    source = open_source(ref)
    got = _read_all(source)
    assert [g.text for g in got] == [r.text for r in records[:3]] and got[1].image == records[1].image
    assert source.get(source.shards()[0], 2) == got[2]


def test_field_mapping_for_parquet_and_hf_image_structs(tmp_path: Path, records: list[Record]) -> None:
    table = pa.Table.from_pylist(
        [{"picture": {"bytes": r.image, "path": None}, "caption": r.text, "extra": 1} for r in records[:3]]
    )
    pq.write_table(table, tmp_path / "hf.parquet")
    ref = DataRef.model_validate(
        {"uri": str(tmp_path / "hf.parquet"), "format": "parquet", "imageField": "picture", "textField": "caption"}
    )
    got = _read_all(open_source(ref))
    assert [(g.image, g.text) for g in got] == [(r.image, r.text) for r in records[:3]]
    assert got[0].id.endswith("hf.parquet#0")


def test_synthetic_source_shards_and_workers() -> None:
    source = open_source("synthetic://shapes?n=10&seed=1&split=sft-knowledge&shard=4")
    assert isinstance(source, SyntheticSource)
    assert source.shards() == ["shard-00000", "shard-00001", "shard-00002"]
    assert [source.rows(s) for s in source.shards()] == [4, 4, 2]
    spec = parse_synthetic_uri("synthetic://shapes?n=10&seed=1&split=sft-knowledge")
    assert [r.id for r in source] == [generate(spec, i).id for i in range(10)]
    assert source.get("shard-00002", 1) == generate(spec, 9)
    parts = [shards_of_worker(source, w, 2) for w in range(2)]
    assert parts == [["shard-00000", "shard-00002"], ["shard-00001"]]
    with pytest.raises(SourceError, match="shard-00000 to shard-00002; found 'shard-00007'"):
        source.blocks("shard-00007")


def test_pvc_uris_map_claims_to_folders(tmp_path: Path, records: list[Record]) -> None:
    write_parquet(tmp_path / "data" / "curated" / "part-00000.parquet", records[:3])
    source = open_source("pvc://data/curated", format="parquet", pvc_root=tmp_path)
    assert [r.id for r in source] == [r.id for r in records[:3]]
    mapped = open_source("pvc://shared/curated", format="parquet", pvc_root={"shared": tmp_path / "data"})
    assert mapped.shards() == source.shards()


def test_globs_and_brace_expansion(tmp_path: Path, records: list[Record]) -> None:
    for i in range(3):
        write_parquet(tmp_path / f"part-{i}.parquet", records[i : i + 1])
    assert len(open_source(str(tmp_path / "part-[02].parquet"), format="parquet").shards()) == 2
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    assert expand_braces("{1..2}/{0..1}") == ["1/0", "1/1", "2/0", "2/1"]


# --- errors -------------------------------------------------------------------------------------------------------
def test_missing_required_field_names_file_row_and_field(tmp_path: Path, records: list[Record]) -> None:
    rows = [_row(r) for r in records[:3]]
    rows[2]["text"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    source = open_source(str(tmp_path / "p.parquet"), format="parquet", require=("image", "text"))
    with pytest.raises(RecordError) as err:
        _read_all(source)
    assert "p.parquet: row 2: field 'text': required (text) but missing" in str(err.value)
    explicit = DataRef.model_validate({"uri": str(tmp_path / "p.parquet"), "format": "parquet", "textField": "alt"})
    with pytest.raises(RecordError, match=r"row 0: field 'alt': required \(text\) but the file has no such column"):
        _read_all(open_source(explicit))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": 5}', "row 1: field 'text': expected a string; found int"),
        ('{"text": "x", "conversations": [{"role": "robot", "content": "hi"}]}', "turn 0: role must be one of"),
        ('{"text": "x", "conversations": [{"role": "user", "content": ["a"]}]}', "turn 0: content must be a string"),
        ('{"text": "x", "meta": [1]}', "field 'meta': expected an object; found list"),
        ('{"image": 3}', "field 'image': expected encoded image bytes, base64 text or a path; found int"),
        ('{"image": "missing.png"}', "field 'image': the image file 'missing.png' does not exist"),
        ('{"text": "x"', "row 1: field '<line>': expected one JSON object per line; found invalid JSON"),
        ("[1, 2]", "row 1: field '<line>': expected a JSON object; found list"),
        ('{"id": "only"}', "the row has none of 'image', 'text', 'conversations'"),
    ],
)
def test_bad_jsonl_rows(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    source = open_source(str(path), format="jsonl")
    with pytest.raises(RecordError) as err:
        _read_all(source)
    assert str(path) in str(err.value) and message in str(err.value)
    with pytest.raises(RecordError):
        source.get(source.shards()[0], 1)


def test_bad_webdataset_member(tmp_path: Path) -> None:
    write_tar(tmp_path / "w.tar", [("a.txt", b"\xff\xfe"), ("a.json", b"[]")])
    with pytest.raises(RecordError, match=r"w.tar: row 0 \(key a\): field 'txt': expected UTF-8 text"):
        _read_all(open_source(str(tmp_path / "w.tar"), format="webdataset"))
    write_tar(tmp_path / "v.tar", [("b.txt", b"caption")])
    with pytest.raises(RecordError, match=r"field 'jpg': required \(image\) but missing"):
        _read_all(open_source(str(tmp_path / "v.tar"), format="webdataset", require=["image"]))


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(str(tmp_path / "nope"), format="parquet")
    with pytest.raises(SourceError, match=r"no \.parquet files found"):
        open_source(str(tmp_path), format="parquet")
    with pytest.raises(SourceError, match="format must be one of parquet, jsonl, webdataset"):
        open_source(str(tmp_path), format="csv")
    with pytest.raises(SourceError, match="must be resolved to its output URI"):
        open_source(DataRef.model_validate({"curationRun": "recaption"}))
    with pytest.raises(ValueError, match="require must list parts among image, text, conversations"):
        open_source("synthetic://shapes", require=["caption"])
    with pytest.raises(ValueError, match="parameter 'n' must be an integer"):
        open_source("synthetic://shapes?n=x")
    with pytest.raises(ValueError, match="unknown URI scheme"):
        open_source("ftp://host/x", format="jsonl")
    with pytest.raises(ValueError, match="required fields must be among"):
        Fields(required=frozenset({"pixels"}))
