"""The paper's benchmarks end to end: VLMEvalKit-layout files, a stub model with scripted replies and a stub judge;
every score, group average and the overall average worked out by hand. A rerun asks neither model nor judge again."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sailvl.eval import registry
from sailvl.eval.client import RetryPolicy
from sailvl.eval.command import main
from sailvl.eval.items import Item
from sailvl.eval.loading import load_items
from tests.eval_files import b64, png, write_spec, write_tsv
from tests.eval_stub import eval_stub

FAST = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.02, timeout=30)
OPTIONS3 = {"A": "cat", "B": "dog", "C": "bird"}

# benchmark -> rows, each with the reply the model gives (popped before the file is written)
ROWS: dict[str, list[dict[str, Any]]] = {
    "MMBench_DEV_EN": [  # circular: question 1 right in both rotations, question 2 wrong in its rotation -> 50
        {"index": 1, "question": "Which animal?", **OPTIONS3, "answer": "B", "reply": "B"},
        {
            "index": 1000001,
            "question": "Which animal?",
            "A": "dog",
            "B": "bird",
            "C": "cat",
            "answer": "A",
            "reply": "A",
        },
        {"index": 2, "question": "Which colour?", "A": "red", "B": "green", "answer": "A", "reply": "A"},
        {"index": 1000002, "question": "Which colour?", "A": "green", "B": "red", "answer": "B", "reply": "A"},
    ],
    "MME": [  # color: accuracy 50 + accuracy+ 0; OCR: 100 + 100 -> 250 over 2 subtasks -> 62.5
        {
            "index": 1,
            "question": "Is the square red?",
            "answer": "Yes",
            "category": "color",
            "image_path": "c.jpg",
            "reply": "Yes",
        },
        {
            "index": 2,
            "image": "1",
            "question": "Is the square blue?",
            "answer": "No",
            "category": "color",
            "image_path": "c.jpg",
            "reply": "Yes",
        },
        {
            "index": 3,
            "question": "Does it say HELLO?",
            "answer": "Yes",
            "category": "OCR",
            "image_path": "o.jpg",
            "reply": "Yes",
        },
        {
            "index": 4,
            "image": "3",
            "question": "Does it say BYE?",
            "answer": "No",
            "category": "OCR",
            "image_path": "o.jpg",
            "reply": "No.",
        },
    ],
    "POPE": [  # TP 1, FN 1, TN 2: precision 1, recall 1/2 -> F1 2/3
        {"index": 1, "question": "Is there a cat in the image?", "answer": "yes", "category": "random", "reply": "Yes"},
        {"index": 2, "question": "Is there a dog in the image?", "answer": "yes", "category": "random", "reply": "No"},
        {"index": 3, "question": "Is there a car in the image?", "answer": "no", "category": "random", "reply": "No"},
        {"index": 4, "question": "Is there a bus in the image?", "answer": "no", "category": "random", "reply": "no"},
    ],
    "HallusionBench": [  # aAcc 50, fAcc 50, qAcc 0 -> 100/3
        {
            "index": "VD_chart_x_0_0_0",
            "question": "Is the 2020 bar taller?",
            "answer": "Yes",
            "l2-category": "chart",
            "reply": "Yes",
        },
        {
            "index": "VD_chart_x_0_1_0",
            "question": "Is the edited 2020 bar taller?",
            "answer": "No",
            "l2-category": "chart",
            "reply": "Yes",
        },
    ],
    "OCRBench": [  # 1 of 2 found -> 50
        {
            "index": 1,
            "question": "What is written?",
            "answer": "['Hello']",
            "category": "Regular Text Recognition",
            "reply": "hello there",
        },
        {
            "index": 2,
            "question": "What number is shown?",
            "answer": "['42']",
            "category": "Digit String Recognition",
            "reply": "41",
        },
    ],
    "DocVQA_VAL": [  # ANLS 1 and 0.5 -> 75
        {"index": 1, "question": "What is the date?", "answer": "['1 May 2020']", "reply": "1 May 2020"},
        {"index": 2, "question": "What is the code?", "answer": "['abcd']", "reply": "ab"},
    ],
    "TextVQA_VAL": [  # 3 of 10 annotators said red: VQA accuracy 0.9
        {"index": 1, "question": "What colour is the sign?", "answer": str(["red"] * 3 + ["blue"] * 7), "reply": "Red"},
    ],
    "ChartQA_TEST": [  # 104 is within 5% of 100; London is not Paris -> 50
        {"index": 1, "question": "What is the peak value?", "answer": "100", "reply": "104."},
        {"index": 2, "question": "Which city is largest?", "answer": "Paris", "reply": "London"},
    ],
    "MMMU_DEV_VAL": [  # open question right, C right, the unreadable reply matched to B by the judge: 2/3
        {"index": 1, "question": "What is x? <image 1>", "answer": "42", "reply": "42"},
        {
            "index": 2,
            "question": "Which law applies?",
            "A": "Ohm",
            "B": "Newton",
            "C": "Hooke",
            "answer": "C",
            "reply": "C",
        },
        {"index": 3, "question": "Which gas?", "A": "oxygen", "B": "nitrogen", "answer": "A", "reply": "I am unsure"},
    ],
    "MathVista_MINI": [  # bare 7 read by rule; the judge extracts B, 1.5 and 8 -> 3 of 4
        {
            "index": 1,
            "question": "Q1: how many?",
            "answer": "7",
            "question_type": "free_form",
            "answer_type": "integer",
            "reply": "7",
        },
        {
            "index": 2,
            "question": "Q2: which?",
            "answer": "5",
            "question_type": "multi_choice",
            "answer_type": "text",
            "choices": "['3', '5']",
            "answer_option": "B",
            "reply": "The answer is 5 because it is larger",
        },
        {
            "index": 3,
            "question": "Q3: how long?",
            "answer": "1.5",
            "question_type": "free_form",
            "answer_type": "float",
            "precision": "1",
            "reply": "It is about one and a half",
        },
        {
            "index": 4,
            "question": "Q4: how many cars?",
            "answer": "9",
            "question_type": "free_form",
            "answer_type": "integer",
            "reply": "maybe 8",
        },
    ],
    "AI2D_TEST": [  # right; the judge says Z for the second -> 50
        {"index": 1, "question": "Which part is the leaf?", "A": "x", "B": "y", "answer": "A", "reply": "A"},
        {"index": 2, "question": "Which part is the root?", "A": "x", "B": "y", "answer": "B", "reply": "hmm"},
    ],
    "MMVet": [  # the judge grades 0.5, then never a number (0) -> 25
        {"index": 1, "question": "What is the total?", "answer": "12", "reply": "It is 12"},
        {"index": 2, "question": "Explain the meme.", "answer": "It is funny", "reply": "A meme"},
    ],
}
EXPECTED = {
    "MMBench_DEV_EN": 50.0,
    "MME": 62.5,
    "POPE": 200 / 3,
    "HallusionBench": 100 / 3,
    "OCRBench": 50.0,
    "DocVQA_VAL": 75.0,
    "TextVQA_VAL": 90.0,
    "ChartQA_TEST": 50.0,
    "MMMU_DEV_VAL": 200 / 3,
    "MathVista_MINI": 75.0,
    "AI2D_TEST": 50.0,
    "MMVet": 25.0,
}


def judge_reply(text: str, images: list[bytes]) -> str:
    if "match an answer with several options" in text:
        return "B" if "Which gas?" in text else "Z"
    if "extract the answer from the model response" in text:
        return next(
            v for k, v in {"The answer is 5": "B", "one and a half": "1.5", "maybe 8": "8"}.items() if k in text
        )
    assert "Compare the ground truth and prediction" in text
    return "0.5" if "What is the total?" in text else "not a number"


def _write_files(folder: Path) -> dict[str, str]:
    """The TSVs, and the model's reply by prompt."""
    replies: dict[str, str] = {}
    for name, rows in ROWS.items():
        clean = []
        for seed, row in enumerate(rows):
            row = {k: v for k, v in row.items() if k != "reply"}
            clean.append({"image": b64(png(seed + 1)), **row})
        write_tsv(folder / f"{name}.tsv", clean)
        bench = registry.get(name)
        for item, row in zip(load_items(bench, str(folder)), rows, strict=True):
            replies[bench.prompt(item)] = row["reply"]
    return replies


def test_paper_benchmarks_score_as_worked_out_by_hand(tmp_path: Path) -> None:
    replies = _write_files(tmp_path / "data")
    out = tmp_path / "out"
    judge = {"name": "judge", "model": {"uri": "/models/judge"}}
    spec = write_spec(tmp_path, tuple(ROWS), data=str(tmp_path / "data"), judge=judge, output={"uri": str(out)})
    with eval_stub(lambda text, images: replies[text]) as model, eval_stub(judge_reply, models=("other", "judge")) as j:
        env = {"SAILVL_MODEL_URL_MODEL": model.url, "SAILVL_MODEL_URL_JUDGE": j.url}
        assert main(str(spec), env=env, retry=FAST) == 0
        assert len(model.requests) == sum(len(rows) for rows in ROWS.values())
        # MMMU 1, AI2D 1, MathVista 3, MMVet 1 + 5 attempts at rising temperature
        assert len(j.requests) == 11
        assert {body["model"] for _, _, body in j.requests} == {"judge"}
        assert [body["temperature"] for t, _, body in j.requests if "Explain the meme" in t] == [
            0.0,
            0.5,
            1.0,
            1.5,
            2.0,
        ]
        results = json.loads((out / "results.json").read_text())
        assert main(str(spec), env=env, retry=FAST) == 0  # a rerun: everything answered and judged already
        assert (len(model.requests), len(j.requests)) == (32, 11)
    assert results["results"] == pytest.approx(EXPECTED)
    assert results["groups"] == pytest.approx(
        {
            "generalVQA": (50 + 62.5 + 25) / 3,
            "ocrVQA": (50 + 75 + 90 + 50) / 4,
            "mathKnowledge": (200 / 3 + 75 + 50) / 3,
            "hallucination": (100 / 3 + 200 / 3) / 2,
        }
    )
    assert results["average"] == pytest.approx(sum(EXPECTED.values()) / 12)
    assert json.loads((out / "results.json").read_text())["results"] == results["results"]
    detail = results["benchmarks"]
    assert detail["MME"]["raw"]["total"] == 250.0
    assert detail["OCRBench"]["raw"]["count"] == 1
    assert detail["MathVista_MINI"]["raw"]["methods"] == {"prefetch": 1, "judge": 3}
    assert detail["MMBench_DEV_EN"]["raw"]["questions"] == 2
    assert detail["MMVet"]["raw"]["unparsed"] == 1
    assert results["judge"] == "judge"


def test_mmmu_upscales_its_first_image() -> None:
    bench = registry.get("MMMU_DEV_VAL")
    (image,) = bench.images(Item("1", 1, (png(1, size=(32, 24)),), {"question": "q", "answer": "A"}))
    assert Image.open(io.BytesIO(image)).size == (64, 48)


def test_without_a_judge_the_scores_are_judge_free_and_say_so(tmp_path: Path) -> None:
    replies = _write_files(tmp_path / "data")
    spec = write_spec(
        tmp_path,
        ("MMVet", "MathVista_MINI", "AI2D_TEST"),
        data=str(tmp_path / "data"),
        output={"uri": str(tmp_path / "o")},
    )
    with eval_stub(lambda text, images: replies[text]) as model:
        assert main(str(spec), env={"SAILVL_MODEL_URL_MODEL": model.url}, retry=FAST) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    # MMVet has no rule (VLMEvalKit refuses to score it without a judge) -> 0
    # MathVista: only the bare 7 is read by rule; the 3 others would go to the judge and score 0 -> 25
    # AI2D: "hmm" names no option and counts as wrong -> 50
    assert results["results"] == {"MMVet": 0.0, "MathVista_MINI": 25.0, "AI2D_TEST": 50.0}
    notes = "\n".join(results["limitations"])
    assert "MMVet: no judge: MMVet is graded by a judge only" in notes
    assert "MathVista_MINI: no judge: 3 replies the rule cannot read score 0" in notes
    assert "AI2D_TEST: 1 replies named no option and count as wrong" in notes
    judge = {name: results["benchmarks"][name]["judge"] for name in ("MMVet", "MathVista_MINI", "AI2D_TEST")}
    assert {name: (j["needsJudge"], j["judgeFree"]) for name, j in judge.items()} == {
        "MMVet": (2, True),
        "MathVista_MINI": (3, True),
        "AI2D_TEST": (1, True),
    }
