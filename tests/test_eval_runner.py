"""`sailvl eval` end to end on the synthetic benchmarks against a stub OpenAI server with scripted answers: exact
scores, resuming after a kill, refused requests, exit codes, metrics while running."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sailvl.eval import registry
from sailvl.eval.client import RetryPolicy
from sailvl.eval.command import main
from sailvl.eval.items import Item
from sailvl.eval.loading import load_items
from sailvl.eval.provenance import VLMEVALKIT_COMMIT
from tests.eval_files import write_spec
from tests.eval_stub import eval_stub, key

FAST = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.02, timeout=30)
SHAPES = ("shapes_caption", "shapes_vqa", "shapes_count", "shapes_ocr", "shapes_pope")
DATA = "synthetic://shapes?n=8&seed=5"
REPO = Path(__file__).resolve().parent.parent


def suite_spec(folder: Path, benchmarks: tuple[str, ...], data: str = DATA, **spec: Any) -> Path:
    return write_spec(folder, benchmarks, data, **spec)


def items_of(benchmark: str, data: str = DATA) -> list[Item]:
    return load_items(registry.get(benchmark), data)


def scripted(answer: Callable[[str, Item], str], benchmarks: tuple[str, ...] = SHAPES) -> dict[str, str]:
    """Replies by (prompt, image) for every item: `answer(benchmark, item)`."""
    replies = {}
    for name in benchmarks:
        bench = registry.get(name)
        for item in items_of(name):
            replies[key(bench.prompt(item), bench.images(item))] = answer(name, item)
    return replies


def _wrong_letter(item: Item) -> str:
    return next(letter for letter in item.options if letter != item["answer"])


def scripted_answer(benchmark: str, item: Item) -> str:
    """75% right on vqa, 50% on count, 7 of 8 on ocr; POPE with TP 3, FN 1, FP 1, one unreadable; 6 true captions."""
    i = int(item.index)
    if benchmark == "shapes_vqa":
        return f"The answer is {item['answer']}." if i < 6 else _wrong_letter(item)
    if benchmark == "shapes_count":
        return f"There are {item['answer']}." if i < 4 else str(int(item["answer"]) + 1)
    if benchmark == "shapes_ocr":
        return f'The word is "{item["answer"]}".' if i < 7 else "XYZZY"
    if benchmark == "shapes_pope":
        assert item["answer"] == ("yes" if i % 2 == 0 else "no"), "the generator alternates yes and no"
        return {0: "Yes", 2: "Yes.", 4: "yes", 6: "No", 1: "No", 3: "no", 5: "Yes", 7: "I am not sure"}[i]
    assert benchmark == "shapes_caption"
    return item["answer"] if i < 6 else ("" if i == 6 else "Nothing to see here.")


EXPECTED = {"shapes_caption": 75.0, "shapes_vqa": 75.0, "shapes_count": 50.0, "shapes_ocr": 87.5, "shapes_pope": 75.0}


def test_synthetic_suite_scores_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = suite_spec(
        tmp_path, SHAPES, maxTiles=4, overrides={"shapes_ocr": {"maxTiles": 9}}, output={"uri": str(tmp_path / "out")}
    )
    termination = tmp_path / "termination"
    with eval_stub(scripted(scripted_answer), default="unscripted") as stub:
        env = {"SAILVL_MODEL_URL_MODEL": stub.url, "SAILVL_TERMINATION_LOG": str(termination)}
        assert main(str(spec), env=env, retry=FAST) == 0
    assert len(stub.requests) == 40
    tiles = {body["mm_processor_kwargs"]["max_patches"] for text, _, body in stub.requests if "What word" not in text}
    assert tiles == {4}
    assert {body["mm_processor_kwargs"]["max_patches"] for text, _, body in stub.requests if "What word" in text} == {9}
    assert {body["model"] for _, _, body in stub.requests} == {"model"}
    message = json.loads(termination.read_text())
    assert message["results"] == EXPECTED
    assert message["average"] == 72.5  # (75 + 75 + 50 + 87.5 + 75) / 5
    assert message["groups"] == {"generalVQA": None, "ocrVQA": None, "mathKnowledge": None, "hallucination": None}
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["benchmarks"]["shapes_pope"]["raw"]["accuracy"] == 62.5  # (3 TP + 2 TN) / 8
    assert results["benchmarks"]["shapes_pope"]["raw"]["unknown"] == 1
    assert results["benchmarks"]["shapes_ocr"]["maxTiles"] == 9
    assert results["counts"] == {"benchmarks": 5, "items": 40}
    assert len((tmp_path / "out" / "shapes_vqa.jsonl").read_text().splitlines()) == 8
    assert "shapes_ocr         87.50  95% [" in capsys.readouterr().out
    # Each score with its interval, how its replies were read, and where the numbers come from.
    vqa = results["benchmarks"]["shapes_vqa"]
    assert vqa["uncertainty"]["method"] == "bootstrap over units" and vqa["uncertainty"]["units"] == 8
    low, high = vqa["uncertainty"]["ci95"]
    assert low <= 75.0 <= high and vqa["uncertainty"]["se"] > 0
    assert vqa["judge"] == {"model": None, "rule": 8, "asked": 0, "failures": 0, "needsJudge": 0, "share": 0.0,
                            "judgeFree": True, "degraded": False}  # fmt: skip
    assert results["provenance"]["vlmevalkit"]["commit"] == VLMEVALKIT_COMMIT
    assert results["provenance"]["model"] == {"uri": "/models/tiny", "digest": None}  # no such folder here
    # VLMEvalKit's files: the predictions with the benchmark's columns, and its score file.
    assert vqa["files"] == ["shapes_vqa.grades.json", "tiny_shapes_vqa.tsv", "tiny_shapes_vqa_acc.csv"]
    with (tmp_path / "out" / "tiny_shapes_vqa.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 8 and rows[0]["prediction"].startswith("The answer is") and "image" not in rows[0]
    assert {"index", "question", "A", "B", "answer"} <= set(rows[0])
    assert (tmp_path / "out" / "tiny_shapes_vqa_acc.csv").read_text() == "split,Overall\nnone,0.75\n"
    assert (tmp_path / "out" / "tiny_shapes_pope_score.csv").read_text().startswith("split,Overall,acc,precision")


def test_a_rerun_asks_only_unanswered_items_and_changed_settings_ask_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = suite_spec(tmp_path, ("shapes_ocr",), output={"uri": str(out)})
    env_for: Callable[[str], dict[str, str]] = lambda url: {"SAILVL_MODEL_URL_MODEL": url}  # noqa: E731
    with eval_stub(scripted(scripted_answer, ("shapes_ocr",))) as stub:
        assert main(str(spec), env=env_for(stub.url), retry=FAST) == 0
        assert len(stub.requests) == 8
        predictions = out / "shapes_ocr.jsonl"
        text = predictions.read_text()
        predictions.write_text(text[: len(text) - 25])  # the last line torn mid-write, as by a kill
        assert main(str(spec), env=env_for(stub.url), retry=FAST) == 0
        assert len(stub.requests) == 9  # only the torn item was asked again
        lines = predictions.read_text().splitlines()
        assert len(lines) == 8 and all(json.loads(line) for line in lines)
        assert main(str(spec), env=env_for(stub.url), retry=FAST) == 0
        assert len(stub.requests) == 9  # everything answered: nothing asked
        spec = suite_spec(tmp_path, ("shapes_ocr",), maxTiles=2, output={"uri": str(out)})
        assert main(str(spec), env=env_for(stub.url), retry=FAST) == 0
        assert len(stub.requests) == 17  # another maxTiles is another question: all asked again
    results = json.loads((out / "results.json").read_text())
    assert results["results"] == {"shapes_ocr": 87.5}


def test_a_killed_run_resumes_asking_only_the_unanswered_items(tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = "synthetic://shapes?n=40&seed=1"
    spec = suite_spec(tmp_path, ("shapes_count",), data=data, workers={"concurrency": 2}, output={"uri": str(out)})
    items = items_of("shapes_count", data)
    bench = registry.get("shapes_count")
    replies = {key(bench.prompt(i), bench.images(i)): i["answer"] for i in items}
    predictions = out / "shapes_count.jsonl"
    with eval_stub(replies, latency=0.1) as stub:
        env = {**os.environ, "SAILVL_MODEL_URL_MODEL": stub.url, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen(
            [sys.executable, "-m", "sailvl", "eval", "--spec", str(spec)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not (predictions.exists() and predictions.read_text().count("\n") >= 6):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "no predictions were written"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        asked_before = len(stub.requests)
        complete = predictions.read_text().split("\n")[:-1]  # whatever follows the last newline was cut short
        assert 6 <= len(complete) < 40
        assert main(str(spec), env={"SAILVL_MODEL_URL_MODEL": stub.url}, retry=FAST) == 0
    assert len(stub.requests) - asked_before == 40 - len(complete)
    assert json.loads((out / "results.json").read_text())["results"] == {"shapes_count": 100.0}


def test_a_request_the_server_refuses_counts_as_wrong_and_is_reported(tmp_path: Path) -> None:
    items = items_of("shapes_ocr")
    refused = registry.get("shapes_ocr").prompt(items[0])  # every shapes_ocr item asks the same question
    spec = suite_spec(tmp_path, ("shapes_ocr", "shapes_count"), output={"uri": str(tmp_path / "out")})
    answers = scripted(lambda b, i: str(i["answer"]), ("shapes_ocr", "shapes_count"))
    with eval_stub(answers, refuse=lambda text: text == refused) as stub:
        assert main(str(spec), env={"SAILVL_MODEL_URL_MODEL": stub.url}, retry=FAST) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["results"] == {"shapes_ocr": 0.0, "shapes_count": 100.0}
    assert results["benchmarks"]["shapes_ocr"]["refused"] == 8
    assert any("8 requests the server refused" in text for text in results["limitations"])


def test_metrics_are_served_while_the_suite_runs(tmp_path: Path) -> None:
    spec = suite_spec(tmp_path, ("shapes_vqa", "shapes_count"))
    port = _free_port()
    seen: dict[str, dict[str, float]] = {}
    answers = scripted(lambda b, i: i["answer"], ("shapes_vqa", "shapes_count"))

    def reply(text: str, images: list[bytes]) -> str:
        if "How many" in text and not seen:  # the first shapes_count request: shapes_vqa is scored by now
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                families = text_string_to_metric_families(response.read().decode())
                seen.update({f.name: {s.labels["benchmark"]: s.value for s in f.samples} for f in families})
        return answers[key(text, images)]

    with eval_stub(reply) as stub:
        env = {"SAILVL_MODEL_URL_MODEL": stub.url, "SAILVL_METRICS_PORT": str(port)}
        assert main(str(spec), env=env, retry=FAST) == 0
    assert seen["sailvl_eval_score"] == {"shapes_vqa": 100.0}
    assert seen["sailvl_eval_items"]["shapes_vqa"] == 8  # the counter family of sailvl_eval_items_total
    assert seen["sailvl_eval_items"].get("shapes_count", 0) <= 8


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("spec_change", "env", "expected"),
    [
        ({"benchmarks": ["NotABenchmark"]}, {"SAILVL_MODEL_URL_MODEL": "http://x/v1"}, "spec.benchmarks[0]: unknown"),
        ({}, {}, "SAILVL_MODEL_URL_MODEL must give"),
        (
            {"judge": {"name": "judge", "model": {"uri": "/models/judge"}}},
            {"SAILVL_MODEL_URL_MODEL": "http://x/v1"},
            "SAILVL_MODEL_URL_JUDGE must give",
        ),
        ({}, {"SAILVL_MODEL_URL_MODEL": "http://x/v1", "SAILVL_METRICS_PORT": "eighty"}, "SAILVL_METRICS_PORT must"),
        ({"output": {"uri": "s3://bucket/eval"}}, {"SAILVL_MODEL_URL_MODEL": "http://x/v1"}, "object stores"),
        ({"data": {"uri": "synthetic://shapes?split=alt"}}, {"SAILVL_MODEL_URL_MODEL": "URL"}, "split=alt"),
    ],
)
def test_invalid_specs_and_configuration_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec_change: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    spec = json.loads(suite_spec(tmp_path, ("shapes_vqa",)).read_text())
    spec["spec"] |= spec_change
    path = tmp_path / "changed.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML: the resolved JSON and a manifest read alike
    with eval_stub() as stub:
        env = {k: (stub.url if v == "URL" else v) for k, v in env.items()}
        assert main(str(path), env=env, retry=FAST) == 2
    assert expected in capsys.readouterr().err


def test_a_malformed_benchmark_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "MMStar.tsv").write_text("index\tquestion\tanswer\n1\tq\tA\n")
    spec = suite_spec(tmp_path, ("MMStar",), data=str(tmp_path / "data"))
    with eval_stub() as stub:
        assert main(str(spec), env={"SAILVL_MODEL_URL_MODEL": stub.url}, retry=FAST) == 2
    assert f"{tmp_path / 'data' / 'MMStar.tsv'}: the header needs an 'image' or 'image_path' column" in (
        capsys.readouterr().err
    )


def test_a_server_that_stays_down_exits_1_and_keeps_the_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    spec = suite_spec(tmp_path, ("shapes_ocr",), workers={"concurrency": 1}, output={"uri": str(out)})
    with eval_stub(scripted(scripted_answer, ("shapes_ocr",)), fail_after=3) as stub:
        assert main(str(spec), env={"SAILVL_MODEL_URL_MODEL": stub.url}, retry=FAST) == 1
    assert "a rerun resumes" in capsys.readouterr().err
    assert len((out / "shapes_ocr.jsonl").read_text().splitlines()) == 3
    assert not (out / "results.json").exists()
