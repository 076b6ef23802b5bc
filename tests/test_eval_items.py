"""Benchmark files in the VLMEvalKit TSV layout, the registry, and the prompts each benchmark asks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sailvl.api.benchmarks import BENCHMARKS
from sailvl.eval import registry
from sailvl.eval.items import BenchmarkFileError, read_tsv
from sailvl.eval.loading import ConfigError, load_items
from tests.eval_files import b64, png, write_tsv

MCQ = {"index": 1, "question": "What is it?", "A": "cat", "B": "dog", "answer": "B", "category": "animals"}


def test_registry_implements_exactly_the_api_benchmark_names() -> None:
    assert tuple(registry.REGISTRY) == BENCHMARKS
    assert all(benchmark.name == name for name, benchmark in registry.REGISTRY.items())
    with pytest.raises(ValueError, match="unknown benchmark 'MMBench'"):
        registry.get("MMBench")


def test_images_inline_by_reference_as_lists_and_by_path(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "p.png").write_bytes(png(9))
    write_tsv(
        tmp_path / "a.tsv",
        [
            {"index": 1, "image": b64(png(1)), "question": "q1", "answer": "x"},
            {"index": 2, "image": "1", "question": "q2", "answer": "x"},  # shares row 1's image
            {"index": 3, "image": str([b64(png(2)), b64(png(3))]), "question": "q3", "answer": "x"},
            {"index": 4, "image": "", "question": "no image: skipped, as VLMEvalKit does", "answer": "x"},
        ],
    )
    items = read_tsv(tmp_path / "a.tsv", ("question", "answer"))
    assert [i.index for i in items] == ["1", "2", "3"]
    assert items[1].images == items[0].images == (png(1),)
    assert items[2].images == (png(2), png(3))
    write_tsv(tmp_path / "b.tsv", [{"index": 7, "image_path": "pics/p.png", "question": "q", "answer": "x"}])
    assert read_tsv(tmp_path / "b.tsv", ("question",))[0].images == (png(9),)


def test_missing_cells_read_as_pandas_reads_them(tmp_path: Path) -> None:
    row = {**MCQ, "image": b64(png(1)), "hint": "nan", "C": "", "D": "None"}
    item = read_tsv(write_tsv(tmp_path / "m.tsv", [row]), ("question", "answer"))[0]
    assert item.get("hint") is None
    assert item.options == {"A": "cat", "B": "dog"}


def _error(tmp_path: Path, rows: list[dict[str, object]], required: tuple[str, ...] = ("question", "answer")) -> str:
    path = write_tsv(tmp_path / "bad.tsv", rows)
    with pytest.raises(BenchmarkFileError) as caught:
        read_tsv(path, required)
    return str(caught.value)


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, [{"index": 1, "image": b64(png(1)), "question": "q"}])
    assert str(tmp_path / "bad.tsv") in message
    assert "the header has no column 'answer'" in message


def test_a_bad_base64_image_names_file_row_and_column(tmp_path: Path) -> None:
    good = {"index": 1, "image": b64(png(1)), "question": "q", "answer": "a"}
    bad = {"index": 2, "image": "not*base64*" * 10, "question": "q", "answer": "a"}
    message = _error(tmp_path, [good, bad])
    assert message.startswith(f"{tmp_path / 'bad.tsv'} row 2 column 'image': is not valid base64")


def test_base64_that_is_not_an_image_is_an_error(tmp_path: Path) -> None:
    message = _error(
        tmp_path, [{"index": 1, "image": b64(b"plain text, not a picture" * 4), "question": "q", "answer": "a"}]
    )
    assert "row 1 column 'image': does not hold an image" in message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"index": 1, "image": "99", "question": "q", "answer": "a"}], "row 1 column 'image': holds '99'"),
        ([{"index": 1, "image": b64(png(1)), "question": "", "answer": "a"}], "row 1 column 'question': is missing"),
        (
            [{"index": 1, "image": b64(png(1)), "question": "q", "answer": "a"}] * 2,
            "row 2: repeats index '1' of row 1",
        ),
        (
            [{"index": 1, "image": "[" + "x" * 80 + "]", "question": "q", "answer": "a"}],
            "column 'image': starts with '['",
        ),
    ],
)
def test_malformed_rows(tmp_path: Path, rows: list[dict[str, object]], expected: str) -> None:
    assert expected in _error(tmp_path, rows)


def test_a_row_with_too_few_cells(tmp_path: Path) -> None:
    path = tmp_path / "short.tsv"
    path.write_text(f"index\timage\tquestion\tanswer\n1\t{b64(png(1))}\tq\ta\n2\t{b64(png(2))}\tq\n")
    with pytest.raises(
        BenchmarkFileError, match=re.escape(f"{path} row 2: has 3 tab-separated cells; the header has 4")
    ):
        read_tsv(path, ())


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFileError, match=re.escape(f"{tmp_path / 'MMStar.tsv'}: no such file")):
        load_items(registry.get("MMStar"), str(tmp_path))


@pytest.mark.parametrize(
    ("benchmark", "row", "expected"),
    [
        ("MMBench_DEV_EN", {**MCQ, "index": "q1"}, "row 1: must be an integer for circular evaluation"),
        ("POPE", {"index": 1, "question": "q", "answer": "maybe"}, "row 1 column 'answer': must be Yes or No"),
        (
            "TextVQA_VAL",
            {"index": 1, "question": "q", "answer": "['a' 'b' oops]"},
            "row 1 column 'answer': starts with",
        ),
        ("HallusionBench", {"index": "a_b", "question": "q", "answer": "Yes", "l2-category": "c"}, "column 'index'"),
        ("MME", {"index": 1, "question": "q", "answer": "Yes"}, "row 1 column 'category': is missing"),
    ],
)
def test_items_a_benchmark_cannot_score_are_errors(
    tmp_path: Path, benchmark: str, row: dict[str, object], expected: str
) -> None:
    write_tsv(tmp_path / f"{benchmark}.tsv", [{**row, "image": b64(png(1))}])
    with pytest.raises(BenchmarkFileError) as caught:
        load_items(registry.get(benchmark), str(tmp_path))
    assert str(tmp_path / f"{benchmark}.tsv") in str(caught.value)
    assert expected in str(caught.value)


def _prompt(tmp_path: Path, benchmark: str, row: dict[str, object]) -> str:
    write_tsv(tmp_path / f"{benchmark}.tsv", [{"index": 1, "image": b64(png(1)), **row}])
    bench = registry.get(benchmark)
    return bench.prompt(load_items(bench, str(tmp_path))[0])


@pytest.mark.parametrize(
    ("benchmark", "row", "prompt"),
    [
        (
            "MMBench_DEV_EN",
            {**MCQ, "hint": "A pet."},
            "A pet.\nWhat is it?\nA. cat\nB. dog\nAnswer with the option's letter from the given choices directly.",
        ),
        ("MMStar", {**MCQ, "question": "这是什么?"}, "这是什么?\nA. cat\nB. dog\n请直接回答选项字母。"),
        (
            "MMMU_DEV_VAL",
            {"question": "Compute x. <image 1>", "answer": "42"},
            "Compute x. <image 1>\nAnswer the question directly.",
        ),
        (
            "MME",
            {"question": "Is it red?", "answer": "Yes", "category": "color"},
            "Is it red? Answer the question using a single word or phrase.",
        ),
        (
            "HallusionBench",
            {"index": "VS_chart_0_0_0_0", "question": "Is it red?", "answer": "No", "l2-category": "chart"},
            "Is it red? Please answer yes or no. Answer the question using a single word or phrase.",
        ),
        ("POPE", {"question": "Is there a dog in the image?", "answer": "no"}, "Is there a dog in the image?"),
        (
            "DocVQA_VAL",
            {"question": "What is the date?", "answer": "['1 May']"},
            "What is the date?\nAnswer the question using a single word or phrase.",
        ),
        (
            "MathVista_MINI",
            {
                "question": "Hint: ...\nQuestion: x?",
                "answer": "3",
                "question_type": "free_form",
                "answer_type": "integer",
            },
            "Hint: ...\nQuestion: x?",
        ),
        ("MMVet", {"question": "Explain the joke.", "answer": "pun"}, "Explain the joke."),
    ],
)
def test_prompts_follow_the_per_dataset_instructions(
    tmp_path: Path, benchmark: str, row: dict[str, object], prompt: str
) -> None:
    assert _prompt(tmp_path, benchmark, row) == prompt


def test_synthetic_items_come_through_the_same_parser_with_the_generators_prompts() -> None:
    items = load_items(registry.get("shapes_vqa"), "synthetic://shapes?n=5&seed=1", limit=3)
    assert [i.index for i in items] == ["0", "1", "2"]
    prompt = registry.get("shapes_vqa").prompt(items[0])
    assert prompt.startswith(items[0]["question"] + "\nA. ")
    assert prompt.endswith("Answer with the option's letter from the given choices directly.")
    caption = load_items(registry.get("shapes_caption"), "synthetic://shapes?n=2&seed=1&split=test")
    assert caption[0]["facts"].startswith("[{")
    with pytest.raises(ConfigError, match="split=alt"):
        load_items(registry.get("shapes_ocr"), "synthetic://shapes?n=2&split=alt")


def test_limit_takes_the_first_items(tmp_path: Path) -> None:
    rows = [{**MCQ, "index": i, "image": b64(png(i))} for i in range(1, 6)]
    write_tsv(tmp_path / "MMStar.tsv", rows)
    assert [i.index for i in load_items(registry.get("MMStar"), str(tmp_path), limit=2)] == ["1", "2"]
