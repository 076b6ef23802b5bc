"""A deterministic OpenAI-compatible server for the curation tests, scripted by directives in the text it is sent.

The caption of an image is `A detailed caption: <alt text>` when the request carries the alt text (useAltText), else
`A caption of image <8 hex digits of the image's SHA-1>`; so directives written into a record's alt text reach the
judge through the caption:

    [judge=N]          the judge answers {"score": N, ...}         (default: the text form "Score: 4")
    [judge=prose]      the judge answers prose, also when asked again
    [judge=prose-once] the judge answers prose, then a valid score when asked again
    [caption=500xK]    the first K caption requests for this record answer HTTP 500
    [caption=400]      caption requests answer HTTP 400
    [caption=empty]    the caption is empty

Score requests get each metric scored (len(text) + position) % 5 + 1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

ALT_MARK = "The image's original alt text, which may be noisy or wrong: "


def _parts(messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The first user turn's text and image URLs."""
    content = messages[0]["content"]
    if isinstance(content, str):
        return content, []
    text = "".join(p.get("text", "") for p in content if p["type"] == "text")
    return text, [p["image_url"]["url"] for p in content if p["type"] == "image_url"]


def _directive(text: str, name: str) -> str | None:
    match = re.search(rf"\[{name}=([^\]]+)\]", text)
    return match.group(1) if match else None


class Script:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> tuple[int, str | None]:
        """(HTTP status, message content) for one request."""
        messages = body["messages"]
        text, images = _parts(messages)
        retry = len(messages) > 1
        if text.startswith("Rate the text below"):
            return 200, self._judge(text, retry)
        if text.startswith("Rate the sample below"):
            return 200, self._score(text)
        return self._caption(text, images)

    def _caption(self, text: str, images: list[str]) -> tuple[int, str | None]:
        alt = text.split(ALT_MARK, 1)[1] if ALT_MARK in text else None
        key = f"caption:{alt or images}"
        with self.lock:
            self.calls[key] += 1
            call = self.calls[key]
        script = _directive(alt or "", "caption")
        if script == "400":
            return 400, None
        if script and script.startswith("500x") and call <= int(script[4:]):
            return 500, None
        if script == "empty":
            return 200, ""
        if alt is not None:
            return 200, f"A detailed caption: {alt}"
        digest = hashlib.sha1(base64.b64decode(images[0].split(",", 1)[1])).hexdigest()[:8]
        return 200, f"A caption of image {digest}"

    def _judge(self, text: str, retry: bool) -> str:
        script = _directive(text, "judge")
        if script == "prose" or (script == "prose-once" and not retry):
            return "This caption describes the picture well and reads nicely."
        if script is None or script == "prose-once":
            return "Score: 4"
        return json.dumps({"score": float(script), "reason": "scripted"})

    def _score(self, text: str) -> str:
        metrics = re.findall(r"^- (\w+)", text, re.MULTILINE)
        body = text.split('Text: """', 1)[1].rsplit('"""', 1)[0]
        return json.dumps({m: (len(body) + i) % 5 + 1 for i, m in enumerate(metrics)})


def build_app(script: Script) -> web.Application:
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        with script.lock:
            script.requests += 1
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
        try:
            if script.delay:
                await asyncio.sleep(script.delay)
            status, content = script.answer(body)
        finally:
            with script.lock:
                script.in_flight -= 1
        if status != 200:
            return web.json_response({"error": {"message": f"scripted {status}"}}, status=status)
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        return web.json_response({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    return app


@contextmanager
def stub_server(script: Script | None = None) -> Iterator[tuple[str, Script]]:
    """Serve on 127.0.0.1 from a thread; yields (base URL ending in /v1, the script)."""
    script = script or Script()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(build_app(script), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10), "the stub server did not start"
    try:
        yield f"http://127.0.0.1:{holder['port']}/v1", script
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
