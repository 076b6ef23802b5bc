"""`sailvl serve`: an exported tiny checkpoint answers OpenAI chat requests with images, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from sailvl.model.build import build_preset
from sailvl.model.checkpoint import export_checkpoint
from sailvl.serve.app import build_app
from sailvl.serve.batching import Batcher
from sailvl.serve.engine import Engine, GenerationRequest
from sailvl.serve.openai import RequestError, decode_data_uri, parse_chat_request


def _data_uri(colour: tuple[int, int, int] = (220, 20, 20)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (96, 72), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _request(text: str = "What colour is it?", image: bool = True, **extra: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image:
        content.insert(0, {"type": "image_url", "image_url": {"url": _data_uri()}})
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8, **extra}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_checkpoint(build_preset("tiny", seed=0), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def engine(checkpoint: Path) -> Engine:
    return Engine(checkpoint)


async def _client(engine: Engine) -> TestClient:  # type: ignore[type-arg]
    client = TestClient(TestServer(build_app(engine, "tiny")))
    await client.start_server()
    return client


async def test_chat_with_an_image_is_answered_deterministically(engine: Engine) -> None:
    client = await _client(engine)
    try:
        answers = []
        for _ in range(2):
            response = await client.post("/v1/chat/completions", json=_request(temperature=0))
            assert response.status == 200
            body = await response.json()
            answers.append(body["choices"][0]["message"]["content"])
            assert body["object"] == "chat.completion"
            assert body["choices"][0]["finish_reason"] in ("stop", "length")
            usage = body["usage"]
            assert usage["prompt_tokens"] > engine.tiler.tile_size // 14 and usage["completion_tokens"] <= 8
        assert answers[0] == answers[1]
    finally:
        await client.close()


async def test_models_health_and_metrics(engine: Engine) -> None:
    client = await _client(engine)
    try:
        models = await (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["tiny"]
        assert (await client.get("/health")).status == 200
        await client.post("/v1/chat/completions", json=_request(image=False, temperature=0))
        metrics = await (await client.get("/metrics")).text()
        assert 'vllm:generation_tokens_total{model_name="tiny"}' in metrics
        assert "vllm:num_requests_running" in metrics
        # Time to first token, as vLLM measures it: one observation per request, within its total latency.
        assert 'vllm:time_to_first_token_seconds_count{model_name="tiny"} 1.0' in metrics
        ttft = float(metrics.split('vllm:time_to_first_token_seconds_sum{model_name="tiny"} ')[1].split()[0])
        e2e = float(metrics.split('vllm:e2e_request_latency_seconds_sum{model_name="tiny"} ')[1].split()[0])
        assert 0 < ttft <= e2e
        assert "vllm:kv_cache_usage_perc" not in metrics  # no paged KV cache: not exported rather than made up
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "tiny", "messages": []}, "messages"),
        ({"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        (
            {
                "model": "tiny",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                ],
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
    ],
)
async def test_bad_requests_are_refused_naming_the_field(engine: Engine, body: dict[str, Any], param: str) -> None:
    client = await _client(engine)
    try:
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status in (400, 404)
        assert (await response.json())["error"]["param"] == param
    finally:
        await client.close()


async def test_an_undecodable_image_is_a_400(engine: Engine) -> None:
    client = await _client(engine)
    bad = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": bad}}]}],
    }
    try:
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status == 400
        assert "cannot be decoded" in (await response.json())["error"]["message"]
    finally:
        await client.close()


def test_parse_keeps_images_in_order_with_placeholders() -> None:
    chat = parse_chat_request(_request(mm_processor_kwargs={"max_patches": 2}), default_max_tokens=16)
    assert chat.messages == [{"role": "user", "content": "<image>\nWhat colour is it?"}]
    assert len(chat.images) == 1 and chat.images[0].startswith(b"\x89PNG")
    assert chat.max_tiles == 2 and not chat.return_token_ids
    for kwargs, field in [({"max_patches": 0}, "max_patches"), ({"min_patches": 1}, "min_patches"), (3, "")]:
        with pytest.raises(RequestError, match=rf"mm_processor_kwargs{'.' + field if field else ''}:"):
            parse_chat_request(_request(mm_processor_kwargs=kwargs), default_max_tokens=16)
    with pytest.raises(RequestError):
        decode_data_uri("data:image/png;base64,@@@", "x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_cli_serves_over_real_http(checkpoint: Path) -> None:
    port = _free_port()
    exe = Path(sys.executable).with_name("sailvl")
    process = subprocess.Popen(
        [str(exe), "serve", "--model", str(checkpoint), "--port", str(port), "--served-model-name", "tiny"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "the server did not come up in 60 s"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(_request(temperature=0)).encode(),
            headers={"Content-Type": "application/json"},
        )
        body = json.loads(urllib.request.urlopen(request, timeout=60).read())
        assert isinstance(body["choices"][0]["message"]["content"], str)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_missing_checkpoint_exits_2(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("sailvl")
    result = subprocess.run([str(exe), "serve", "--model", str(tmp_path / "nope")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "cannot load --model" in result.stderr


# --- batching -------------------------------------------------------------------------------------------------


def _generation(text: str, colours: list[tuple[int, int, int]], **extra: Any) -> GenerationRequest:
    images = [decode_data_uri(_data_uri(c), "url") for c in colours]
    content = "<image>\n" * len(images) + text
    return GenerationRequest(messages=[{"role": "user", "content": content}], images=images, **extra)


BATCH = [
    _generation("What colour is it?", [(220, 20, 20)], max_tokens=12),
    _generation("Describe the picture in detail, please.", [(20, 20, 220), (20, 220, 20)], max_tokens=6),
    _generation("Say something.", [], max_tokens=16),
    _generation("Two words.", [(120, 120, 120)], max_tokens=1, max_tiles=2),
]


def test_a_batch_answers_each_request_as_it_alone_would(engine: Engine) -> None:
    alone = [engine.complete_batch([request])[0] for request in BATCH]
    together = engine.complete_batch(BATCH)
    assert together == alone
    assert [c.completion_tokens <= r.max_tokens for c, r in zip(together, BATCH, strict=True)] == [True] * 4
    assert len({c.prompt_tokens for c in together}) > 1  # the rows really were padded to one width


def test_a_refused_prompt_does_not_fail_the_rest_of_its_batch(engine: Engine) -> None:
    too_long = _generation("x " * (engine.max_model_len + 10), [], max_tokens=4)
    results = engine.complete_batch([BATCH[0], too_long, BATCH[2]])
    assert isinstance(results[1], ValueError) and str(results[1]).startswith("the prompt has")
    assert results[0] == engine.complete_batch([BATCH[0]])[0] and results[2] == engine.complete_batch([BATCH[2]])[0]


def test_sampled_requests_are_not_batched(engine: Engine) -> None:
    with pytest.raises(ValueError, match="greedy"):
        engine.complete_batch([BATCH[0], replace(BATCH[2], temperature=0.7, seed=1)])
    sampled = replace(BATCH[2], temperature=0.9, seed=3)
    assert engine.complete_batch([sampled]) == engine.complete_batch([sampled])  # the seed fixes the answer


async def test_the_batcher_takes_greedy_requests_together_and_keeps_sampled_ones_in_place(engine: Engine) -> None:
    batcher = Batcher(engine, max_num_seqs=3)
    loop = asyncio.get_running_loop()
    greedy, sampled = BATCH[0], replace(BATCH[0], temperature=0.5)
    queue = [greedy, sampled, greedy, greedy, greedy, sampled]
    waiters = [(request, loop.create_future()) for request in queue]
    waiters[2][1].cancel()  # its client went away
    batcher._waiting.extend(waiters)
    position = {id(future): i for i, (_, future) in enumerate(waiters)}
    taken = [[position[id(future)] for _, future in batcher.take()] for _ in range(4)]
    # 2 is dropped; 1 and 5 (sampled) keep their places behind the batch and then run alone.
    assert taken == [[0, 3, 4], [1], [5], []]
    assert not batcher._waiting
    with pytest.raises(ValueError, match="max_num_seqs"):
        Batcher(engine, max_num_seqs=0)


async def test_concurrent_requests_are_answered_as_sequential_ones(engine: Engine) -> None:
    client = TestClient(TestServer(build_app(engine, "tiny", max_num_seqs=4)))
    await client.start_server()
    bodies = [_request(text=f"Question {i}: what is it?" + " really" * i, temperature=0) for i in range(6)]

    async def ask(body: dict[str, Any]) -> str:
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status == 200, await response.text()
        return str((await response.json())["choices"][0]["message"]["content"])

    try:
        sequential = [await ask(body) for body in bodies]
        concurrent = await asyncio.gather(*(ask(body) for body in bodies))
        assert list(concurrent) == sequential
        metrics = await (await client.get("/metrics")).text()
        assert 'vllm:num_requests_waiting{model_name="tiny"} 0.0' in metrics
    finally:
        await client.close()
