"""`sailvl curate` end to end, as the operator runs it: worker processes and a finalize process against a real HTTP
server (the scripted stub of tests/curate_stub.py), with exact expected outputs, counts, rejects and termination
messages; bad inputs; dedup across workers; a worker killed with SIGKILL and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from sailvl.cli import main
from sailvl.data.sources import open_source
from tests.curate_data import curation, encode, picture, png, read_parts, write_parquet
from tests.curate_stub import Script, stub_server

STEPS = [
    {"recaption": {"model": "captioner", "useAltText": True}},
    {"judge": {"model": "captioner", "minScore": 3}},
    {"filter": {"minChars": 30}},
    {"dedup": {"image": "phash", "text": "minhash", "threshold": 0.8}},
]


def curate(spec: Path, url: str, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAILVL_MODEL_URL_CAPTIONER": url}
    if log is not None:
        env["SAILVL_TERMINATION_LOG"] = str(log)
    command = [sys.executable, "-m", "sailvl", "curate", "--spec", str(spec), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def write_spec(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def mixed_input(tmp_path: Path) -> Path:
    """Two input shards (one per worker) mixing every fate a record can meet."""
    folder = tmp_path / "input"
    folder.mkdir()
    write_parquet(
        folder / "a.parquet",
        [
            {"id": "a1", "image": png(1), "text": "a red circle on a blue field [judge=5]"},
            {"id": "a2", "image": png(2), "text": "two squares [judge=2]"},
            {"id": "a3", "image": b"\x89PNG\r\n\x1a\n broken", "text": "corrupt bytes [judge=5]"},
            {"id": "a4", "image": png(4), "text": "a star above a lake [caption=500x1]"},
            {"id": "a5", "image": png(5), "text": "a blob [judge=prose]"},
            {"id": "a6", "image": png(6), "text": "a tall tree by a river [judge=prose-once]"},
            {"id": "a7", "image": None, "text": "text only, no image at all"},
            {"id": "a8", "image": png(8), "text": "too long for the server [caption=400]"},
            {"id": "a9", "image": png(9), "text": "tiny"},
        ],
    )
    write_parquet(
        folder / "b.parquet",
        [
            {"id": "b1", "image": png(1), "text": "the same red circle again [judge=5]"},
            {"id": "b2", "image": encode(picture(4).resize((120, 100)), "JPEG", quality=80), "text": "a star, bigger"},
            {"id": "b3", "image": png(13), "text": "a tall tree by a river [judge=prose-once]"},
            {"id": "b4", "image": png(14), "text": "a green triangle under a moon"},
            {"id": "b5", "image": None, "text": None},
        ],
    )
    return folder


EXPECTED_KEPT = {
    "a1": "A detailed caption: a red circle on a blue field [judge=5]",
    "a4": "A detailed caption: a star above a lake [caption=500x1]",
    "a6": "A detailed caption: a tall tree by a river [judge=prose-once]",
    "b4": "A detailed caption: a green triangle under a moon",
}
EXPECTED_REJECTS = {
    "a3": "bad_image",
    "a5": "judge_unparseable",
    "a7": "missing_image",
    "a8": "request_rejected",
}


def test_two_workers_and_finalize_give_exact_outputs(tmp_path: Path, mixed_input: Path) -> None:
    output = tmp_path / "out"
    spec = write_spec(tmp_path / "run.yaml", curation(str(mixed_input), output, STEPS))
    with stub_server() as (url, script):
        first = curate(spec, url, "--worker", "0", "--workers", "2", log=tmp_path / "w0.json")
        second = curate(spec, url, "--worker", "1", "--workers", "2", log=tmp_path / "w1.json")
        final = curate(spec, url, "--finalize", log=tmp_path / "final.json")
    for done in (first, second, final):
        assert done.returncode == 0, done.stderr

    assert json.loads((tmp_path / "w0.json").read_text()) == {
        "worker": 0, "shards": 1, "in": 9, "kept": 3,
        "dropped": {"filter_min_chars": 1, "judge_below_min": 1},
        "rejected": {"bad_image": 1, "judge_unparseable": 1, "missing_image": 1, "request_rejected": 1},
    }  # fmt: skip
    assert json.loads((tmp_path / "w1.json").read_text()) == {
        "worker": 1, "shards": 1, "in": 5, "kept": 4, "dropped": {}, "rejected": {"bad_record": 1},
    }  # fmt: skip
    counts = {
        "in": 14, "kept": 4,
        "dropped": {"dedup_image": 2, "dedup_text": 1, "filter_min_chars": 1, "judge_below_min": 1},
        "rejected": {"bad_image": 1, "bad_record": 1, "judge_unparseable": 1, "missing_image": 1, "request_rejected": 1},
    }  # fmt: skip
    assert json.loads((tmp_path / "final.json").read_text()) == {"shards": 2, "samples": 4, **counts}
    assert json.loads(final.stdout.strip().splitlines()[-1]) == {"shards": 2, "samples": 4, **counts}

    rows = read_parts(output)
    assert [(r["id"], r["text"]) for r in rows] == list(EXPECTED_KEPT.items())
    metas = {r["id"]: json.loads(r["meta"]) for r in rows}
    assert metas["a1"] == {
        "alt_text": "a red circle on a blue field [judge=5]", "caption_model": "captioner", "judge": {"captioner": 5.0},
    }  # fmt: skip
    assert metas["a4"]["judge"] == {"captioner": 4.0} and metas["a6"]["judge"] == {"captioner": 4.0}
    assert rows[0]["image"] == png(1)  # the original bytes travel untouched
    assert set(rows[0]) == {"id", "image", "images", "text", "conversations", "meta"}  # no signature columns

    rejects = {
        r["id"]: r["reason"]
        for p in sorted((output / "_rejects").glob("*.parquet"))
        for r in pq.read_table(p).to_pylist()
    }
    assert rejects == {**EXPECTED_REJECTS, f"{mixed_input}/b.parquet#4": "bad_record"}

    manifest = json.loads((output / "_manifest.json").read_text())
    assert manifest["counts"] == counts
    assert manifest["files"] == [
        {"name": "part-00000.parquet", "samples": 3},
        {"name": "part-00001.parquet", "samples": 1},
    ]
    assert [s["counts"]["in"] for s in manifest["inputShards"]] == [9, 5]
    for shard in manifest["inputShards"]:  # in = kept + dropped + rejected, shard by shard
        c = shard["counts"]
        assert c["in"] == c["kept"] + sum(c["dropped"].values()) + sum(c["rejected"].values())
    assert manifest["inputShards"][1]["counts"]["dropped"] == {"dedup_image": 2, "dedup_text": 1}
    assert {"decode", "steps[0].recaption", "steps[1].judge", "finalize.dedup"} <= set(manifest["timings"])
    assert manifest["timings"]["steps[0].recaption"]["records"] == 12  # all but a3 (bad image) and b5 (bad row)
    assert not (output / "_work").exists()

    # 500 then 200: a4's caption was asked twice; prose-once: a6 and b3 were judged twice; prose: a5 twice.
    assert script.calls["caption:a star above a lake [caption=500x1]"] == 2

    # The output reads back as a data set (DataRef uri + format: parquet).
    source = open_source(str(output), format="parquet")
    assert [r.id for r in source] == list(EXPECTED_KEPT)


def test_rerun_after_finalize_changes_nothing(
    tmp_path: Path, mixed_input: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    spec = str(write_spec(tmp_path / "run.yaml", curation(str(mixed_input), output, STEPS, parallelism=1)))
    monkeypatch.setenv("SAILVL_TERMINATION_LOG", str(tmp_path / "term.json"))
    with stub_server() as (url, script):
        monkeypatch.setenv("SAILVL_MODEL_URL_CAPTIONER", url)
        assert main(["curate", "--spec", spec]) == 0
        assert main(["curate", "--spec", spec, "--finalize"]) == 0
        requests = script.requests
        parts = {p.name: p.read_bytes() for p in output.glob("part-*.parquet")}
        assert main(["curate", "--spec", spec]) == 0
        assert json.loads((tmp_path / "term.json").read_text())["in"] == 14
        assert main(["curate", "--spec", spec, "--finalize"]) == 0
        assert script.requests == requests  # nothing was sent again
    assert json.loads((tmp_path / "term.json").read_text())["samples"] == 4
    assert {p.name: p.read_bytes() for p in output.glob("part-*.parquet")} == parts


def test_bad_spec_exits_2_with_a_message(tmp_path: Path, mixed_input: Path) -> None:
    doc = curation(str(mixed_input), tmp_path / "out", STEPS)
    doc["spec"]["steps"][1]["judge"]["minScore"] = 9
    spec = write_spec(tmp_path / "bad.yaml", doc)
    done = curate(spec, "http://127.0.0.1:9/v1", "--worker", "0", log=tmp_path / "term.json")
    assert done.returncode == 2
    assert "spec.steps[1].judge.minScore" in done.stderr
    assert "spec.steps[1].judge.minScore" in json.loads((tmp_path / "term.json").read_text())["error"]


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--worker", "1"], {}, "SAILVL_MODEL_URL_CAPTIONER is not set"),
        (["--worker", "2", "--workers", "2"], {"SAILVL_MODEL_URL_CAPTIONER": "http://h/v1"}, r"must be in [0, 2)"),
        ([], {"SAILVL_MODEL_URL_CAPTIONER": "http://h/v1", "JOB_COMPLETION_INDEX": "-1"}, "JOB_COMPLETION_INDEX"),
        (
            ["--worker", "0"],
            {"SAILVL_MODEL_URL_CAPTIONER": "http://h/v1", "SAILVL_METRICS_PORT": "http"},
            "SAILVL_METRICS_PORT must be a TCP port",
        ),
    ],
)
def test_bad_configuration_exits_2(
    tmp_path: Path,
    mixed_input: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    error: str,
) -> None:
    for name in ("SAILVL_MODEL_URL_CAPTIONER", "JOB_COMPLETION_INDEX", "SAILVL_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = write_spec(tmp_path / "good.yaml", curation(str(mixed_input), tmp_path / "out", STEPS))
    assert main(["curate", "--spec", str(spec), *args]) == 2
    assert error in capsys.readouterr().err


def test_a_missing_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "nowhere.yaml", curation(str(tmp_path / "missing"), tmp_path / "out", STEPS))
    assert main(["curate", "--spec", str(spec), "--finalize"]) == 2
    assert "spec.input: no such file or folder" in capsys.readouterr().err


def test_finalize_before_the_workers_is_a_retryable_failure(
    tmp_path: Path, mixed_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "run.yaml", curation(str(mixed_input), tmp_path / "out", STEPS))
    assert main(["curate", "--spec", str(spec), "--finalize"]) == 1
    assert "2 of 2 input shards have no worker output" in capsys.readouterr().err


KILL_STEPS = [
    {"recaption": {"model": "captioner", "useAltText": True}},
    {"judge": {"model": "captioner"}},
    {"dedup": {"image": "phash", "text": "minhash"}},
]


@pytest.mark.slow
def test_a_worker_killed_mid_shard_and_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    uri = "synthetic://shapes?n=96&seed=3&shard=16"
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    spec_killed = write_spec(tmp_path / "k.yaml", curation(uri, killed, KILL_STEPS, fmt=None, parallelism=1))
    spec_clean = write_spec(tmp_path / "c.yaml", curation(uri, clean, KILL_STEPS, fmt=None, parallelism=1))
    with stub_server(Script(delay=0.03)) as (url, script):
        env = {**os.environ, "SAILVL_MODEL_URL_CAPTIONER": url}
        command = [sys.executable, "-m", "sailvl", "curate", "--spec", str(spec_killed)]
        worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not (killed / "_work" / "in-00001.parquet").exists() and time.time() < deadline:
            time.sleep(0.02)
        seen = script.requests
        while script.requests < seen + 8 and time.time() < deadline:
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        done = sorted(p.name for p in (killed / "_work").glob("in-*.parquet"))
        partial = list((killed / "_work").glob(".in-*.tmp"))
        assert done and len(done) < 6, done
        assert partial, "the worker should have died with a shard half written"

        assert curate(spec_killed, url).returncode == 0
        assert not list((killed / "_work").glob(".in-*.tmp"))  # the rerun cleared what the killed worker left
        assert curate(spec_killed, url, "--finalize").returncode == 0
        assert curate(spec_clean, url).returncode == 0
        assert curate(spec_clean, url, "--finalize").returncode == 0

    after_kill, uninterrupted = read_parts(killed), read_parts(clean)
    assert after_kill == uninterrupted
    ids = [r["id"] for r in after_kill]
    assert len(ids) == len(set(ids)) and len(ids) > 80
    manifests = [json.loads((folder / "_manifest.json").read_text()) for folder in (killed, clean)]
    assert manifests[0]["counts"] == manifests[1]["counts"] and manifests[0]["counts"]["in"] == 96
    assert not list(killed.glob("**/.*.tmp"))
