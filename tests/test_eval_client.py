"""The evaluation's OpenAI client against a real HTTP server: retries, refusals, the bound on requests in flight."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sailvl.eval.client import ChatClient, RequestRejected, RetryPolicy, ServerUnavailable, tiles_kwargs, user_message
from tests.eval_files import png

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.02, timeout=10)
Handler = Callable[[int], web.Response]


class Recorder:
    def __init__(self, respond: Handler, latency: float = 0.0) -> None:
        self.respond, self.latency = respond, latency
        self.calls = 0
        self.in_flight = self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []


def _ok(text: str = "fine") -> web.Response:
    return web.json_response({"choices": [{"message": {"role": "assistant", "content": text}}]})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Recorder], Any]]:
    servers: list[TestServer] = []

    async def start(recorder: Recorder) -> str:
        async def chat(request: web.Request) -> web.Response:
            recorder.calls += 1
            recorder.bodies.append(await request.json())
            recorder.in_flight += 1
            recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
            await asyncio.sleep(recorder.latency)
            recorder.in_flight -= 1
            return recorder.respond(recorder.calls)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v1"))

    yield start
    for server in servers:
        await server.close()


async def _ask(url: str, concurrency: int = 2) -> str:
    async with ChatClient(url, concurrency=concurrency, retry=FAST) as client:
        return await client.chat([user_message("hi")], model="m", max_tokens=4)


async def test_server_errors_and_rate_limits_are_retried(serve: Callable[[Recorder], Any]) -> None:
    def respond(call: int) -> web.Response:
        if call == 1:
            return web.json_response({"error": "busy"}, status=503)
        if call == 2:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "0"})
        return _ok("third time")

    recorder = Recorder(respond)
    assert await _ask(await serve(recorder)) == "third time"
    assert recorder.calls == 3


async def test_a_refused_request_is_not_retried(serve: Callable[[Recorder], Any]) -> None:
    recorder = Recorder(lambda call: web.json_response({"error": "prompt too long"}, status=400))
    with pytest.raises(RequestRejected, match="HTTP 400") as caught:
        await _ask(await serve(recorder))
    assert caught.value.status == 400
    assert recorder.calls == 1


async def test_every_attempt_failing_raises_server_unavailable(serve: Callable[[Recorder], Any]) -> None:
    recorder = Recorder(lambda call: web.json_response({"error": "down"}, status=502))
    with pytest.raises(ServerUnavailable, match="failed 4 times; last: HTTP 502"):
        await _ask(await serve(recorder))
    assert recorder.calls == FAST.attempts


async def test_an_unreachable_server_raises_server_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(ServerUnavailable, match="ClientConnectorError"):
        await _ask(f"http://127.0.0.1:{port}/v1")


async def test_requests_in_flight_never_exceed_the_concurrency(serve: Callable[[Recorder], Any]) -> None:
    recorder = Recorder(lambda call: _ok(), latency=0.02)
    url = await serve(recorder)
    async with ChatClient(url, concurrency=3, retry=FAST) as client:
        await asyncio.gather(*(client.chat([user_message(str(i))], model="m", max_tokens=1) for i in range(20)))
    assert recorder.calls == 20
    assert recorder.max_in_flight == 3


async def test_images_travel_as_data_uris_before_the_text(serve: Callable[[Recorder], Any]) -> None:
    recorder = Recorder(lambda call: _ok())
    url = await serve(recorder)
    async with ChatClient(url, concurrency=1, retry=FAST) as client:
        await client.chat([user_message("what?", [png(1)])], model="m", max_tokens=3, extra=tiles_kwargs(12))
    body = recorder.bodies[0]
    assert body["mm_processor_kwargs"] == {"max_patches": 12} and body["temperature"] == 0.0 and body["max_tokens"] == 3
    image, text = body["messages"][0]["content"]
    prefix = "data:image/png;base64,"
    assert image["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image["image_url"]["url"][len(prefix) :]) == png(1)
    assert text == {"type": "text", "text": "what?"}
