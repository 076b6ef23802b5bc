"""The HTTP side of `sailvl serve`: OpenAI-compatible routes over an `Engine`, with vLLM's metric names."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sailvl.serve import DEFAULT_MAX_NUM_SEQS
from sailvl.serve.batching import Batcher
from sailvl.serve.engine import Engine, GenerationRequest
from sailvl.serve.openai import RequestError, chat_response, models_response, parse_chat_request

# vLLM's own buckets for time to first token (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
NAME: web.AppKey[str] = web.AppKey("name", str)
METRICS: web.AppKey[ServeMetrics] = web.AppKey("metrics", object)  # type: ignore[arg-type]
BATCHER: web.AppKey[Batcher] = web.AppKey("batcher", Batcher)


class ServeMetrics:
    """The vLLM metrics the dashboards read, so a local server shows up like a vLLM one."""

    def __init__(self, name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.running = Gauge("vllm:num_requests_running", "Requests generating.", labels, registry=self.registry)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests queued.", labels, registry=self.registry)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", labels, registry=self.registry)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", labels, registry=self.registry)
        self.latency = Histogram("vllm:e2e_request_latency_seconds", "Request latency.", labels, registry=self.registry)
        self.first_token = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token (queueing and prefill).",
            labels,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        # No paged KV cache here: vllm:kv_cache_usage_perc has no meaning for this server and is not exported.
        self.name = name

    def queue(self, waiting: int, running: int) -> None:
        self.waiting.labels(self.name).set(waiting)
        self.running.labels(self.name).set(running)


def build_app(engine: Engine, served_name: str, *, max_num_seqs: int = DEFAULT_MAX_NUM_SEQS) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    metrics = ServeMetrics(served_name)
    app[ENGINE], app[NAME], app[METRICS] = engine, served_name, metrics
    app[BATCHER] = Batcher(engine, max_num_seqs=max_num_seqs, on_change=metrics.queue)
    app.on_startup.append(_start_batcher)
    app.on_cleanup.append(_stop_batcher)
    app.add_routes(
        [
            web.post("/v1/chat/completions", _chat),
            web.get("/v1/models", _models),
            web.get("/health", _health),
            web.get("/metrics", _metrics),
        ]
    )
    return app


async def _start_batcher(app: web.Application) -> None:
    await app[BATCHER].start()


async def _stop_batcher(app: web.Application) -> None:
    await app[BATCHER].stop()


async def _chat(request: web.Request) -> web.Response:
    engine, name, metrics = request.app[ENGINE], request.app[NAME], request.app[METRICS]
    started = time.perf_counter()
    try:
        try:
            body: Any = await request.json()
        except json.JSONDecodeError as exc:
            raise RequestError("body", f"not valid JSON: {exc}") from None
        chat = parse_chat_request(body, default_max_tokens=min(512, engine.max_model_len))
        if chat.model != name:
            raise RequestError("model", f"this server serves {name!r}; found {chat.model!r}", status=404)
    except RequestError as err:
        return web.json_response(err.body(), status=err.status)
    generation = GenerationRequest(
        messages=chat.messages,
        images=chat.images,
        max_tokens=chat.max_tokens,
        temperature=chat.temperature,
        seed=chat.seed,
        max_tiles=chat.max_tiles,
    )
    try:
        completion = await request.app[BATCHER].submit(generation)
    except ValueError as err:  # a prompt that cannot be built: placeholders, images, length
        return web.json_response(RequestError("messages", str(err)).body(), status=400)
    metrics.prompt_tokens.labels(name).inc(completion.prompt_tokens)
    metrics.generation_tokens.labels(name).inc(completion.completion_tokens)
    metrics.latency.labels(name).observe(time.perf_counter() - started)
    if completion.first_token_at is not None:
        metrics.first_token.labels(name).observe(max(0.0, completion.first_token_at - started))
    return web.json_response(
        chat_response(
            model=name,
            text=completion.text,
            finish_reason=completion.finish_reason,
            prompt_token_ids=completion.prompt_token_ids,
            token_ids=completion.token_ids,
            return_token_ids=chat.return_token_ids,
        )
    )


async def _models(request: web.Request) -> web.Response:
    return web.json_response(models_response(request.app[NAME], request.app[ENGINE].max_model_len))


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[METRICS].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
