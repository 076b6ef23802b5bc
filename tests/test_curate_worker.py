"""Workers in process: metrics, the bound on requests in flight, servers that are down, tolerant reading of bad
rows, independence from the number of workers, and the spec and environment a worker is given."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sailvl.api import CurationRun, parse_resource
from sailvl.api.metrics import exposed_names
from sailvl.curate.client import RetryPolicy, ServersUnavailable
from sailvl.curate.finalize import finalize
from sailvl.curate.metrics import CurateMetrics
from sailvl.curate.runner import InputUnreadable, Worker
from sailvl.curate.spec import SpecError, load_run, model_env_name, model_urls, worker_slot
from sailvl.data.sources import open_source
from tests.curate_data import curation, png, read_parts, write_parquet
from tests.curate_stub import Script, stub_server


def run_of(doc: dict[str, Any]) -> CurationRun:
    run = parse_resource(doc)
    assert isinstance(run, CurationRun)
    return run


def work(run: CurationRun, url: str, workers: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    return [
        asyncio.run(Worker(run, w, workers, urls={"captioner": url}, **kwargs).execute()).message()
        for w in range(workers)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_count_records_requests_and_shards(tmp_path: Path) -> None:
    uri = "synthetic://shapes?n=24&seed=5&shard=8"
    steps = [{"recaption": {"model": "captioner"}}, {"filter": {"minChars": 10}}]
    run = run_of(curation(uri, tmp_path / "out", steps, fmt=None, parallelism=1))
    metrics = CurateMetrics()
    port = free_port()
    metrics.serve(port)
    with stub_server() as (url, script):
        [message] = work(run, url, metrics=metrics)
    assert message["kept"] == 24
    sample = metrics.registry.get_sample_value
    assert sample("sailvl_curate_records_total", {"outcome": "kept", "reason": ""}) == 24
    assert sample("sailvl_curate_shards_done_total") == 3
    assert sample("sailvl_curate_request_duration_seconds_count", {"model": "captioner"}) == script.requests == 24
    assert sample("sailvl_curate_requests_in_flight", {"model": "captioner"}) == 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("sailvl_")}
    names = {n for n in names if not n.endswith("_created")}  # prometheus_client's creation timestamps
    assert names and names <= exposed_names()
    assert "sailvl_curate_requests_in_flight" in names and "sailvl_curate_request_duration_seconds_bucket" in names


def test_requests_in_flight_reach_but_never_pass_the_concurrency(tmp_path: Path) -> None:
    uri = "synthetic://shapes?n=40&seed=6&shard=7"
    steps = [{"recaption": {"model": "captioner"}}, {"judge": {"model": "captioner"}}]
    run = run_of(curation(uri, tmp_path / "out", steps, fmt=None, parallelism=1, concurrency=6))
    with stub_server(Script(delay=0.05)) as (url, script):
        [message] = work(run, url)
    assert message["kept"] == 40 and script.requests == 80
    assert script.max_in_flight == 6


def test_servers_that_are_down_stop_the_worker_without_committing_anything(tmp_path: Path) -> None:
    uri = "synthetic://shapes?n=12&seed=7&shard=6"
    run = run_of(curation(uri, tmp_path / "out", [{"recaption": {"model": "captioner"}}], fmt=None, parallelism=1))
    policy = RetryPolicy(attempts=2, base_delay=0.001, abort_after=4)
    with pytest.raises(ServersUnavailable, match="4 requests in a row failed"):
        work(run, f"http://127.0.0.1:{free_port()}/v1", policy=policy)
    assert not list((tmp_path / "out" / "_work").glob("in-*.parquet"))
    with stub_server() as (url, _):
        [message] = work(run, url)
    assert message == {"worker": 0, "shards": 2, "in": 12, "kept": 12, "dropped": {}, "rejected": {}}


def test_bad_rows_are_rejected_and_the_shard_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    lines = [
        {"id": "j0", "text": "a long enough text to keep"},
        "{not json",
        {"id": "j2", "text": "another long enough text"},
        {"id": "j3", "meta": {"only": "meta"}},
        {"id": "j4", "text": "the last long enough text"},
        ["a", "list"],
    ]
    (folder / "part.jsonl").write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    run = run_of(curation(str(folder), tmp_path / "out", [{"filter": {"minChars": 20}}], fmt="jsonl", parallelism=1))
    [message] = work(run, "http://unused/v1")
    assert message["in"] == 6 and message["kept"] == 3 and message["rejected"] == {"bad_record": 3}
    rejects = pq.read_table(tmp_path / "out" / "_rejects" / "in-00000.parquet").to_pylist()
    assert [r["id"] for r in rejects] == [f"{folder}/part.jsonl#{row}" for row in (1, 3, 5)]
    finalize(run)
    assert [r["id"] for r in read_parts(tmp_path / "out")] == ["j0", "j2", "j4"]


def test_the_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    uri = "synthetic://shapes?n=50&seed=8&shard=9"
    steps = [
        {"recaption": {"model": "captioner", "useAltText": True}},
        {"score": {"model": "captioner", "metrics": ["difficulty", "relevance"]}},
        {"dedup": {"image": "exact"}},
        {"dedup": {"image": "phash", "phashDistance": 6, "text": "minhash", "threshold": 0.7}},
    ]
    outputs = []
    with stub_server() as (url, _):
        for workers in (1, 3):
            run = run_of(curation(uri, tmp_path / f"out{workers}", steps, fmt=None, samples_per_shard=7))
            messages = work(run, url, workers)
            assert sum(m["in"] for m in messages) == 50 and [m["shards"] for m in messages][:1] == [
                6 if workers == 1 else 2
            ]
            report = finalize(run)
            outputs.append((read_parts(tmp_path / f"out{workers}"), report.message()))
    assert outputs[0] == outputs[1]
    rows, message = outputs[0]
    assert message["in"] == 50 and message["kept"] == len(rows) < 50  # near-duplicate captions of similar scenes
    assert all(set(json.loads(r["meta"])["scores"]) == {"difficulty", "relevance"} for r in rows)


def test_a_changed_input_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_parquet(folder / "a.parquet", [{"id": "a", "image": png(1), "text": "x"}])
    run = run_of(curation(str(folder), tmp_path / "out", [{"dedup": {"image": "exact"}}], parallelism=1))
    work(run, "http://unused/v1")
    (folder / "a.parquet").rename(folder / "b.parquet")
    with pytest.raises(SpecError, match="the input changed"):
        work(run, "http://unused/v1")


def test_load_run_reads_yaml_or_resolved_json(tmp_path: Path) -> None:
    doc = curation("synthetic://shapes?n=8", tmp_path / "out", [{"recaption": {"model": "captioner"}}], fmt=None)
    (tmp_path / "spec.json").write_text(json.dumps(doc))
    assert load_run(tmp_path / "spec.json").name == "curate-test"
    other = {"apiVersion": "sailvl.io/v1alpha1", "kind": "EvalSuite", "metadata": {"name": "e"}, "spec": {}}
    (tmp_path / "two.yaml").write_text(json.dumps(other) + "\n---\n" + json.dumps(doc))
    assert load_run(tmp_path / "two.yaml").name == "curate-test"
    with pytest.raises(SpecError, match="expected exactly one CurationRun document; found 0"):
        (tmp_path / "none.yaml").write_text(json.dumps(other))
        load_run(tmp_path / "none.yaml")
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_run(tmp_path / "missing.yaml")
    doc["spec"]["input"] = {"curationRun": "upstream"}
    (tmp_path / "ref.yaml").write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=r"spec.input.curationRun \(upstream\) must be resolved"):
        load_run(tmp_path / "ref.yaml")


def test_model_urls_come_from_the_environment(tmp_path: Path) -> None:
    doc = curation("synthetic://shapes?n=8", tmp_path, [{"recaption": {"model": "captioner"}}], fmt=None)
    doc["spec"]["models"].append({"name": "qa-judge", "model": {"uri": "/m"}})
    doc["spec"]["steps"].append({"judge": {"model": "qa-judge"}})
    run = run_of(doc)
    assert model_env_name("qa-judge") == "SAILVL_MODEL_URL_QA_JUDGE"
    env = {"SAILVL_MODEL_URL_CAPTIONER": "http://cap:8000/v1/", "SAILVL_MODEL_URL_QA_JUDGE": "https://j/v1"}
    assert model_urls(run, env) == {"captioner": "http://cap:8000/v1", "qa-judge": "https://j/v1"}
    with pytest.raises(SpecError, match=r"steps\[1\].judge uses model 'qa-judge', but SAILVL_MODEL_URL_QA_JUDGE"):
        model_urls(run, {"SAILVL_MODEL_URL_CAPTIONER": "http://cap/v1"})
    with pytest.raises(SpecError, match="must be an http"):
        model_urls(run, {**env, "SAILVL_MODEL_URL_QA_JUDGE": "j:8000"})


@pytest.mark.parametrize(
    ("worker", "workers", "env", "expected"),
    [
        (None, None, {"JOB_COMPLETION_INDEX": "3"}, (3, 4)),
        (1, None, {"JOB_COMPLETION_INDEX": "3"}, (1, 4)),
        (None, 1, {}, (0, 1)),
        (None, None, {}, "--worker is required with 4 workers"),
        (None, None, {"JOB_COMPLETION_INDEX": "x"}, "JOB_COMPLETION_INDEX must be a non-negative integer"),
        (4, None, {}, r"must be in \[0, 4\); found 4"),
        (0, 0, {}, "--workers must be at least 1"),
    ],
)
def test_worker_slot(
    tmp_path: Path, worker: int | None, workers: int | None, env: dict[str, str], expected: object
) -> None:
    run = run_of(curation("synthetic://shapes?n=8", tmp_path, [{"dedup": {"image": "exact"}}], fmt=None, parallelism=4))
    if isinstance(expected, str):
        with pytest.raises(SpecError, match=expected):
            worker_slot(worker, workers, run, env)
    else:
        assert worker_slot(worker, workers, run, env) == expected


def test_an_unreadable_input_shard_stops_the_worker_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_parquet(folder / "a.parquet", [{"id": "a", "image": png(1), "text": "x"}])
    run = run_of(curation(str(folder), tmp_path / "out", [{"dedup": {"image": "exact"}}], parallelism=1))
    (folder / "a.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(InputUnreadable, match=r"cannot read input shard .*a\.parquet"):
        work(run, "http://unused/v1")
    assert not (tmp_path / "out" / "_work" / "in-00000.parquet").exists()


def test_curation_never_loads_torch() -> None:
    code = (
        "import sys, sailvl.cli, sailvl.curate.command, sailvl.curate.finalize; "
        "print(','.join(m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""


def test_records_of_every_shape_survive_the_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    turns = [{"role": "user", "content": "<image>\nHow many?"}, {"role": "assistant", "content": "Two."}]
    rows = [
        {"id": "one", "image": png(1), "images": None, "text": "a single picture", "conversations": None},
        {"id": "two", "image": None, "images": [png(2), png(3)], "text": "a pair of pictures", "conversations": None},
        {"id": "sft", "image": png(4), "images": None, "text": None, "conversations": turns},
        {"id": "txt", "image": None, "images": None, "text": "words only, no picture", "conversations": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "mixed.parquet")
    steps = [
        {"score": {"model": "captioner", "metrics": ["difficulty"]}},
        {"dedup": {"image": "exact", "text": "minhash"}},
    ]
    run = run_of(curation(str(folder), tmp_path / "out", steps, parallelism=1))
    with stub_server() as (url, _):
        [message] = work(run, url)
    assert message["kept"] == 4
    finalize(run)
    records = list(open_source(str(tmp_path / "out"), format="parquet"))
    assert [r.id for r in records] == ["one", "two", "sft", "txt"]
    assert records[1].images == (png(2), png(3)) and records[0].images == (png(1),) and records[3].images == ()
    assert records[2].conversations == turns and records[2].text is None
    assert all(set(r.meta["scores"]) == {"difficulty"} for r in records)


def test_a_run_that_keeps_nothing_has_no_shards(tmp_path: Path) -> None:
    run = run_of(curation("synthetic://shapes?n=10&shard=4", tmp_path / "out", [{"filter": {"minChars": 10000}}],
                          fmt=None, parallelism=1))  # fmt: skip
    work(run, "http://unused/v1")
    message = finalize(run).message()
    assert message == {
        "shards": 0,
        "samples": 0,
        "in": 10,
        "kept": 0,
        "dropped": {"filter_min_chars": 10},
        "rejected": {},
    }
    assert not list((tmp_path / "out").glob("part-*"))
