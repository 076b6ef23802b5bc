"""synthetic://shapes: strict URIs, determinism, independence, and ground truth that the pixels confirm."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sailvl.data.synthetic import (
    COLOURS,
    COLUMNS,
    POSITIONS,
    SPLITS,
    Scene,
    SyntheticSpec,
    SyntheticUriError,
    benchmark_rows,
    benchmark_spec,
    extract_facts,
    fact_key,
    generate,
    parse_synthetic_uri,
    write_benchmark_tsv,
)
from sailvl.data.synthetic.scene import TEXT_COLOUR
from sailvl.data.tokens import IMAGE_PLACEHOLDER

IMAGE_SPLITS = [s for s in SPLITS if s not in ("text", "test")]


def spec_of(split: str, n: int = 40, seed: int = 0, size: str = "224-448") -> SyntheticSpec:
    return parse_synthetic_uri(f"synthetic://shapes?n={n}&seed={seed}&split={split}&size={size}")


# --- URI parameters ---------------------------------------------------------------------------------------------
def test_defaults_and_canonical_uri() -> None:
    spec = parse_synthetic_uri("synthetic://shapes")
    assert (spec.n, spec.seed, spec.split, spec.min_side, spec.encoding, spec.shard) == (
        1024,
        0,
        "alt",
        224,
        "png",
        256,
    )
    full = parse_synthetic_uri("synthetic://shapes?n=10&seed=3&split=sft-knowledge&size=224-448&encoding=jpeg&shard=4")
    assert parse_synthetic_uri(full.uri()) == full
    assert full.num_shards == 3 and list(full.shard_range(2)) == [8, 9]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("synthetic://shapes?n=10&colour=red", "unknown synthetic:// parameter 'colour'"),
        ("synthetic://shapes?n=ten", "parameter 'n' must be an integer"),
        ("synthetic://shapes?n=0", "parameter 'n' must be in [1,"),
        ("synthetic://shapes?n=-3", "parameter 'n' must be an integer"),
        ("synthetic://shapes?seed=1.5", "parameter 'seed' must be an integer"),
        ("synthetic://shapes?split=train", "parameter 'split' must be one of alt, reference"),
        ("synthetic://shapes?size=32", "parameter 'size' must be in [96, 2048]; found 32"),
        ("synthetic://shapes?size=448-224", "low <= high; found '448-224'"),
        ("synthetic://shapes?encoding=gif", "'encoding' must be png or jpeg; found 'gif'"),
        ("synthetic://shapes?n=1&n=2", "parameter 'n' is given twice"),
        ("synthetic://shapes?n", "must read key=value"),
        ("synthetic://faces?n=1", "expected synthetic://shapes"),
    ],
)
def test_bad_uris_name_the_parameter(uri: str, message: str) -> None:
    with pytest.raises(SyntheticUriError) as err:
        parse_synthetic_uri(uri)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


# --- determinism and independence -------------------------------------------------------------------------------
def _digest(split: str, seed: int, indices: range) -> str:
    h = hashlib.sha256()
    for i in indices:
        r = generate(spec_of(split, seed=seed), i)
        h.update(json.dumps([r.id, r.text, r.conversations, r.meta], sort_keys=True).encode())
        for image in r.images:
            h.update(image)
    return h.hexdigest()


@pytest.mark.parametrize("split", [s for s in SPLITS if s != "test"])
def test_same_seed_same_bytes(split: str) -> None:
    assert _digest(split, 7, range(6)) == _digest(split, 7, range(6))
    assert _digest(split, 7, range(6)) != _digest(split, 8, range(6))


def test_same_bytes_in_another_process() -> None:
    code = (
        "from sailvl.data.synthetic import generate, parse_synthetic_uri;import hashlib;h=hashlib.sha256();"
        "s=parse_synthetic_uri('synthetic://shapes?n=9&seed=5&split=sft-preference&size=224-448&encoding=jpeg');"
        "[h.update(generate(s,i).images[0]+repr(generate(s,i).conversations).encode()) for i in range(9)];"
        "print(h.hexdigest())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_splits_and_indices_are_independent() -> None:
    scenes = {}
    for split in IMAGE_SPLITS:
        for i in range(20):
            scenes[(split, i)] = json.dumps(generate(spec_of(split), i).meta["scene"], sort_keys=True)
    # Every (split, index) draws its own scene: no two of the 220 coincide.
    assert len(set(scenes.values())) == len(scenes)
    # Record i does not depend on n (random access: any record without the others).
    assert generate(spec_of("alt", n=5), 3) == generate(spec_of("alt", n=500), 3)


# --- ground truth read back from the pixels ---------------------------------------------------------------------
def _blobs(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1) of the 8-connected components of a boolean mask."""
    seen = np.zeros_like(mask)
    boxes = []
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, xs, ys = deque([(y, x)]), [x], [y]
        while queue:
            cy, cx = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
                        xs.append(nx)
                        ys.append(ny)
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return boxes


@pytest.mark.parametrize("split", ["reference", "shapes_ocr", "sft-preference"])
def test_colour_counts_read_back_from_the_image(split: str) -> None:
    spec = spec_of(split, n=30, seed=11, size="96-448")
    for i in range(30):
        record = generate(spec, i)
        scene = Scene.from_dict(record.meta["scene"])
        pixels = np.asarray(Image.open(io.BytesIO(record.image or b"")).convert("RGB"))
        assert pixels.shape == (scene.height, scene.width, 3)
        for colour, rgb in COLOURS.items():
            boxes = _blobs(np.all(pixels == rgb, axis=-1))
            truth = [s for s in scene.shapes if s.colour == colour]
            assert len(boxes) == len(truth), (record.id, colour)
            # Each blob lies in the grid cell its shape's position names.
            for x0, y0, x1, y1 in boxes:
                row, col = int((y0 + y1) / 2 * 3 // scene.height), int((x0 + x1) / 2 * 3 // scene.width)
                assert POSITIONS[row * 3 + col] in {s.position for s in truth}
        text_pixels = np.all(pixels == TEXT_COLOUR[1], axis=-1).sum()
        assert (text_pixels > 0) == (scene.word is not None), record.id


def test_jpeg_encoding_decodes_at_the_scene_size() -> None:
    spec = parse_synthetic_uri("synthetic://shapes?n=3&split=reference&size=300-320&encoding=jpeg")
    record = generate(spec, 1)
    image = Image.open(io.BytesIO(record.image or b""))
    assert image.format == "JPEG"
    assert image.size == (record.meta["scene"]["width"], record.meta["scene"]["height"])


# --- text ------------------------------------------------------------------------------------------------------
def test_reference_captions_state_exactly_the_true_facts() -> None:
    spec = spec_of("reference", n=300)
    for i in range(300):
        record = generate(spec, i)
        truth = {fact_key(f) for f in Scene.from_dict(record.meta["scene"]).facts()}
        assert {fact_key(f) for f in extract_facts(record.text or "")} == truth, record.text
        assert record.meta["facts"] == Scene.from_dict(record.meta["scene"]).facts()


def test_extract_facts_reads_free_phrasing() -> None:
    caption = 'Two red circles, in the upper left and the center; a big blue star at the bottom-right. The word "cat".'
    facts = {fact_key(f) for f in extract_facts(caption)}
    expected: list[dict[str, object]] = [
        {"type": "has", "colour": "red", "shape": "circle"},
        {"type": "count", "colour": "red", "shape": "circle", "count": 2},
        {"type": "at", "colour": "red", "shape": "circle", "position": "top left"},
        {"type": "at", "colour": "red", "shape": "circle", "position": "center"},
        {"type": "has", "colour": "blue", "shape": "star"},
        {"type": "at", "colour": "blue", "shape": "star", "position": "bottom right"},
        {"type": "word", "text": "CAT"},
    ]
    assert facts == {fact_key(f) for f in expected}
    assert extract_facts("A nice picture.") == []


def test_alt_text_is_short_and_often_wrong_or_vague() -> None:
    spec = spec_of("alt", n=400)
    kinds: Counter[str] = Counter()
    false_statements = 0
    for i in range(400):
        record = generate(spec, i)
        kinds[record.meta["alt_kind"]] += 1
        assert record.text and len(record.text) < 80
        truth = {fact_key(f) for f in Scene.from_dict(record.meta["scene"]).facts()}
        stated = {fact_key(f) for f in extract_facts(record.text)}
        false_statements += bool(stated - truth)
        if record.meta["alt_kind"] == "true":
            assert stated <= truth, record.text
    assert set(kinds) == {"true", "vague", "wrong", "junk"} and kinds["true"] < 250
    assert false_statements >= 30  # the wrong ones name something that is not there


@pytest.mark.parametrize("split", ["sft-knowledge", "sft-instruction", "sft-preference"])
def test_sft_conversations_are_well_formed(split: str) -> None:
    turns_per_record = []
    for i in range(60):
        record = generate(spec_of(split, n=60), i)
        conv = record.conversations or []
        assert [t["role"] for t in conv] == ["user", "assistant"] * (len(conv) // 2) and conv
        assert conv[0]["content"].startswith(IMAGE_PLACEHOLDER + "\n")
        assert sum(t["content"].count(IMAGE_PLACEHOLDER) for t in conv) == 1
        assert all(t["content"].strip() for t in conv)
        assert record.meta["difficulty"] == ["sft-knowledge", "sft-instruction", "sft-preference"].index(split) + 1
        turns_per_record.append(len(conv) // 2)
    if split == "sft-knowledge":
        assert set(turns_per_record) == {1}
    if split == "sft-instruction":
        assert min(turns_per_record) >= 2


def test_text_split_has_no_image() -> None:
    record = generate(spec_of("text"), 0)
    assert record.images == () and record.text and len(record.text.split()) > 30


# --- benchmarks -------------------------------------------------------------------------------------------------
def _scene_of_row(name: str, index: int) -> Scene:
    record = generate(spec_of(name, n=60), index)
    return Scene.from_dict(record.meta["scene"])


def test_benchmark_answers_match_the_scene() -> None:
    rows = {name: list(benchmark_rows(spec_of(name, n=60))) for name in COLUMNS}
    for row in rows["shapes_count"]:
        scene = _scene_of_row("shapes_count", row["index"])
        noun = row["question"].removeprefix("How many ").split(" are there")[0].split()
        colour = noun[0] if noun[0] in COLOURS else None
        shape = None if noun[-1] == "shapes" else noun[-1].removesuffix("s")
        assert row["answer"] == str(scene.count(colour=colour, shape=shape))
    for row in rows["shapes_pope"]:
        scene = _scene_of_row("shapes_pope", row["index"])
        colour, shape = row["question"].removeprefix("Is there a ").split(" in the image")[0].split()
        assert row["answer"] == ("yes" if scene.count(colour=colour, shape=shape) else "no")
    assert Counter(r["answer"] for r in rows["shapes_pope"]) == {"yes": 30, "no": 30}
    for row in rows["shapes_vqa"]:
        scene = _scene_of_row("shapes_vqa", row["index"])
        truth = row[row["answer"]]
        assert len({row[k] for k in "ABCD"}) == 4
        if row["category"] == "shape":
            assert scene.at(row["question"].split("in the ")[1].rstrip("?")).shape == truth  # type: ignore[union-attr]
        elif row["category"] == "color":
            assert scene.at(row["question"].split("in the ")[1].rstrip("?")).colour == truth  # type: ignore[union-attr]
        else:
            assert scene.at(truth) is not None
    for row in rows["shapes_ocr"]:
        assert row["answer"] == _scene_of_row("shapes_ocr", row["index"]).word.text  # type: ignore[union-attr]
    for row in rows["shapes_caption"]:
        assert json.loads(row["facts"]) == _scene_of_row("shapes_caption", row["index"]).facts()


def test_benchmark_tsv_in_vlmevalkit_layout(tmp_path: Path) -> None:
    folder = tmp_path
    for name, columns in COLUMNS.items():
        spec = benchmark_spec("synthetic://shapes?n=12&seed=2&split=test", name)
        path = write_benchmark_tsv(spec, folder / f"{name}.tsv")
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert len(rows) == 12 and tuple(rows[0]) == columns
        assert [r["index"] for r in rows] == [str(i) for i in range(12)]
        image = Image.open(io.BytesIO(base64.b64decode(rows[3]["image"])))
        assert image.size[0] >= 96
        if name == "shapes_caption":
            assert json.loads(rows[0]["facts"])[0]["type"] == "total"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.tsv" for n in COLUMNS)  # no partial files left


def test_benchmark_spec_checks_the_split() -> None:
    assert benchmark_spec("synthetic://shapes?n=4", "shapes_pope").split == "shapes_pope"
    assert benchmark_spec("synthetic://shapes?n=4&split=shapes_pope", "shapes_pope").n == 4
    with pytest.raises(SyntheticUriError, match="split=test or split=shapes_count"):
        benchmark_spec("synthetic://shapes?n=4&split=shapes_vqa", "shapes_count")
    with pytest.raises(ValueError, match="unknown synthetic benchmark 'MMStar'"):
        benchmark_spec("synthetic://shapes?n=4", "MMStar")
    with pytest.raises(ValueError, match="split=test names the benchmark items"):
        generate(parse_synthetic_uri("synthetic://shapes?n=4&split=test"), 0)
