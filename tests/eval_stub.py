"""An OpenAI-compatible stub server for the evaluation tests: replies come from a script keyed by what was asked
(the prompt text and the SHA-1 of each image), so a test knows exactly which answer each item gets.

    with eval_stub({key(prompt, images): "B", ...}, default="no idea") as stub:
        ...  # stub.url ends in /v1; stub.requests lists every chat request's (text, image digests, body)

`fail_after=N` answers HTTP 503 to every chat request after the N-th (a server that went away).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def key(text: str, images: Sequence[bytes] = ()) -> str:
    return "|".join([text, *(hashlib.sha1(i).hexdigest() for i in images)])


@dataclass
class Stub:
    replies: Mapping[str, str] | Callable[[str, list[bytes]], str]
    default: str = ""
    latency: float = 0.0
    fail_after: int | None = None
    refuse: Callable[[str], bool] | None = None  # prompts answered with HTTP 400
    models: tuple[str, ...] = ("model",)
    url: str = ""
    requests: list[tuple[str, list[str], dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, text: str, images: list[bytes]) -> str:
        if callable(self.replies):
            return self.replies(text, images)
        return self.replies.get(key(text, images), self.default)


def _parts(body: dict[str, Any]) -> tuple[str, list[bytes]]:
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return content, []
    text = "".join(p["text"] for p in content if p["type"] == "text")
    images = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in content if p["type"] == "image_url"]
    return text, images


def _app(stub: Stub) -> web.Application:
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        text, images = _parts(body)
        with stub.lock:
            stub.requests.append((text, [hashlib.sha1(i).hexdigest() for i in images], body))
            count = len(stub.requests)
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        try:
            if stub.latency:
                await asyncio.sleep(stub.latency)
        finally:
            with stub.lock:
                stub.in_flight -= 1
        if stub.fail_after is not None and count > stub.fail_after:
            return web.json_response({"error": {"message": "scripted outage"}}, status=503)
        if stub.refuse is not None and stub.refuse(text):
            return web.json_response({"error": {"message": "prompt too long"}}, status=400)
        content = stub.reply(text, images)
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        return web.json_response({"object": "chat.completion", "model": body["model"], "choices": [choice]})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in stub.models]})

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    return app


@contextmanager
def eval_stub(
    replies: Mapping[str, str] | Callable[[str, list[bytes]], str] | None = None, **options: Any
) -> Iterator[Stub]:
    """Serve a Stub on 127.0.0.1 from its own thread and event loop."""
    stub = Stub(replies if replies is not None else {}, **options)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(_app(stub), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder["runner"] = runner
        stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10), "the stub server did not start"
    try:
        yield stub
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
