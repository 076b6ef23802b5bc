"""The OpenAI-compatible client against a real aiohttp server: retries with backoff on 429, 5xx, timeouts and
connection errors; no retry on other 4xx; a worker-wide bound on requests in flight; and a stop when the servers are
down rather than a reject of every record."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sailvl.curate.client import ChatClient, Health, RequestFailed, RetryPolicy, ServersUnavailable, open_session
from sailvl.curate.metrics import CurateMetrics

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=2.0)
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
Handler = Callable[[web.Request], Any]


def completion(content: Any, finish: str = "stop") -> web.Response:
    return web.json_response(
        {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}]}
    )


class Server:
    """Answers request n with `script[n]` (the last one repeats) and records the request bodies."""

    def __init__(self, script: list[Handler]) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = self.script[min(len(self.bodies), len(self.script)) - 1](request)
            return await response if asyncio.iscoroutine(response) else response
        finally:
            self.in_flight -= 1


async def serve(server: Server) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with open_session(16) as s:
        yield s


async def ask(session: aiohttp.ClientSession, script: list[Handler], **kwargs: Any) -> tuple[Any, Server]:
    server = Server(script)
    runner, url = await serve(server)
    options = {"policy": FAST, **kwargs}
    client = ChatClient(session, url, "cap", limit=asyncio.Semaphore(4), health=Health(100), **options)
    try:
        return await client.complete(MESSAGES, max_tokens=7, temperature=0.5), server
    except RequestFailed as e:
        return e, server
    finally:
        await runner.cleanup()


async def test_request_shape_and_answer(session: aiohttp.ClientSession) -> None:
    answer, server = await ask(session, [lambda r: completion("A cat.", "length")])
    assert (answer.text, answer.finish_reason) == ("A cat.", "length")
    assert server.bodies == [{"model": "cap", "messages": MESSAGES, "max_tokens": 7, "temperature": 0.5}]


@pytest.mark.parametrize(
    ("first", "retried"),
    [
        (lambda r: web.Response(status=500), True),
        (lambda r: web.Response(status=503, headers={"Retry-After": "0"}), True),
        (lambda r: web.Response(status=429, headers={"Retry-After": "0.01"}), True),
        (lambda r: web.Response(status=400, text="prompt too long"), False),
        (lambda r: web.Response(status=404), False),
    ],
)
async def test_retries_on_transient_statuses_only(
    session: aiohttp.ClientSession, first: Handler, retried: bool
) -> None:
    answer, server = await ask(session, [first, lambda r: completion("ok")])
    if retried:
        assert answer.text == "ok" and len(server.bodies) == 2
    else:
        assert isinstance(answer, RequestFailed) and answer.reason == "request_rejected" and len(server.bodies) == 1


@pytest.mark.parametrize(("status", "reason"), [(500, "server_error"), (502, "server_error"), (429, "rate_limited")])
async def test_persistent_failures_give_up_after_the_attempts(
    session: aiohttp.ClientSession, status: int, reason: str
) -> None:
    answer, server = await ask(session, [lambda r: web.Response(status=status, text="busy")])
    assert isinstance(answer, RequestFailed) and answer.reason == reason
    assert len(server.bodies) == FAST.attempts and "after 3 tries" in str(answer) and "busy" in str(answer)


async def test_a_slow_answer_times_out_and_is_retried(session: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return completion("late")

    policy = RetryPolicy(attempts=2, base_delay=0.01, timeout=0.2)
    answer, server = await ask(session, [slow, lambda r: completion("on time")], policy=policy)
    assert answer.text == "on time" and len(server.bodies) == 2
    answer, _ = await ask(session, [slow], policy=policy)
    assert isinstance(answer, RequestFailed) and answer.reason == "timeout"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (lambda r: web.Response(text="<html>proxy error</html>"), "bad_response"),
        (lambda r: web.json_response({"choices": []}), "bad_response"),
        (lambda r: completion(["a", "list"]), "bad_response"),
    ],
)
async def test_unusable_answers_are_bad_responses(session: aiohttp.ClientSession, body: Handler, expected: str) -> None:
    answer, _ = await ask(session, [body])
    assert isinstance(answer, RequestFailed) and answer.reason == expected


async def test_a_null_content_is_an_empty_answer(session: aiohttp.ClientSession) -> None:
    answer, _ = await ask(session, [lambda r: completion(None)])
    assert answer.text == ""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_errors_are_retried_then_stop_the_worker(session: aiohttp.ClientSession) -> None:
    health = Health(abort_after=3)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    client = ChatClient(session, url, "cap", limit=asyncio.Semaphore(4), health=health, policy=FAST)
    for _ in range(2):
        with pytest.raises(RequestFailed, match=r"connection_error.*after 3 tries"):
            await client.complete(MESSAGES, max_tokens=1, temperature=0)
    with pytest.raises(ServersUnavailable, match="3 requests in a row failed"):
        await client.complete(MESSAGES, max_tokens=1, temperature=0)


async def test_a_success_resets_the_failure_streak_and_4xx_does_not_count(session: aiohttp.ClientSession) -> None:
    health = Health(abort_after=2)
    server = Server([lambda r: web.Response(status=500), lambda r: web.Response(status=500),
                     lambda r: web.Response(status=500), lambda r: completion("ok"),
                     lambda r: web.Response(status=400)])  # fmt: skip
    runner, url = await serve(server)
    policy = RetryPolicy(attempts=3, base_delay=0.001)
    client = ChatClient(session, url, "cap", limit=asyncio.Semaphore(1), health=health, policy=policy)
    try:
        with pytest.raises(RequestFailed):
            await client.complete(MESSAGES, max_tokens=1, temperature=0)  # 3 x 500: streak 1
        assert (await client.complete(MESSAGES, max_tokens=1, temperature=0)).text == "ok"  # streak 0
        for _ in range(3):
            with pytest.raises(RequestFailed, match="request_rejected"):
                await client.complete(MESSAGES, max_tokens=1, temperature=0)
        assert health.failures == 0
    finally:
        await runner.cleanup()


async def test_in_flight_requests_are_bounded_across_clients(session: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return completion("ok")

    server = Server([slow])
    runner, url = await serve(server)
    metrics = CurateMetrics()
    limit, health = asyncio.Semaphore(5), Health(100)
    clients = [
        ChatClient(session, url, name, limit=limit, health=health, policy=FAST, metrics=metrics) for name in ("a", "b")
    ]
    try:
        await asyncio.gather(*(c.complete(MESSAGES, max_tokens=1, temperature=0) for c in clients for _ in range(20)))
    finally:
        await runner.cleanup()
    assert server.max_in_flight == 5
    for name in ("a", "b"):
        assert metrics.registry.get_sample_value("sailvl_curate_request_duration_seconds_count", {"model": name}) == 20
        assert metrics.registry.get_sample_value("sailvl_curate_requests_in_flight", {"model": name}) == 0


def test_backoff_grows_with_full_jitter_and_honours_retry_after() -> None:
    import random

    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(0)
    delays = [[policy.backoff(attempt, None, rng) for _ in range(200)] for attempt in (1, 2, 3, 4, 5, 6)]
    assert [round(max(d)) for d in delays] == [1, 2, 4, 8, 8, 8]
    assert all(min(d) < 0.2 for d in delays)
    assert policy.backoff(1, 5.0, rng) >= 5.0 and policy.backoff(1, 100.0, rng) == 8.0
    assert json.dumps(policy.backoff(1, None, rng))  # a plain float
