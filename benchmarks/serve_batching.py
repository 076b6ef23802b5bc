"""Serving throughput of `sailvl serve`: greedy requests generated together versus one at a time.

A tiny model (the quickstart's preset, random weights, exported as a stage exports it) is served twice in this
process over real HTTP: with the default `--max-num-seqs` (16) and with `--max-num-seqs 1`, the peer, which is how
the server answered before it batched. The same requests go to both, 16 in flight: a distinct image each (one
tile) and a caption prompt, greedy, `--max-tokens` new tokens (a random model rarely stops early, so every answer
is about that long). Both rates count the whole request, HTTP and image decoding included; `identical` says
whether both servers gave the same answer to every request.

Run: `python benchmarks/serve_batching.py [--requests N] [--max-tokens T]`. The last line of output is one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import torch
from aiohttp.test_utils import TestServer
from PIL import Image, ImageDraw

from sailvl.model.build import build_preset
from sailvl.model.checkpoint import export_checkpoint
from sailvl.serve import DEFAULT_MAX_NUM_SEQS
from sailvl.serve.app import build_app
from sailvl.serve.engine import Engine

IN_FLIGHT = 16


def _image(rng: random.Random) -> str:
    image = Image.new("RGB", (rng.randint(160, 320), rng.randint(120, 240)), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 4)):
        x, y, r = rng.randint(20, 140), rng.randint(20, 100), rng.randint(8, 30)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _bodies(n: int, max_tokens: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    return [
        {
            "model": "tiny",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": _image(rng)}},
                        {"type": "text", "text": "Describe the image in one sentence."},
                    ],
                }
            ],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        for _ in range(n)
    ]


async def _measure(engine: Engine, max_num_seqs: int, bodies: list[dict[str, Any]]) -> tuple[float, list[str]]:
    server = TestServer(build_app(engine, "tiny", max_num_seqs=max_num_seqs))
    await server.start_server()
    url = str(server.make_url("/v1/chat/completions"))
    slots = asyncio.Semaphore(IN_FLIGHT)
    try:
        async with aiohttp.ClientSession() as session:

            async def ask(body: dict[str, Any]) -> str:
                async with slots, session.post(url, json=body) as response:
                    response.raise_for_status()
                    return str((await response.json())["choices"][0]["message"]["content"])

            await ask(bodies[0])  # warm-up
            started = time.perf_counter()
            answers = await asyncio.gather(*(ask(body) for body in bodies))
            return len(bodies) / (time.perf_counter() - started), list(answers)
    finally:
        await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(export_checkpoint(build_preset("tiny", seed=0), Path(tmp) / "tiny"))
    bodies = _bodies(args.requests, args.max_tokens)
    batched, batched_answers = await _measure(engine, DEFAULT_MAX_NUM_SEQS, bodies)
    alone, alone_answers = await _measure(engine, 1, bodies)
    threads = torch.get_num_threads()
    print(f"{args.requests} requests, {IN_FLIGHT} in flight, {args.max_tokens} new tokens, {threads} threads")
    print(f"max-num-seqs {DEFAULT_MAX_NUM_SEQS}: {batched:.1f} requests/s; max-num-seqs 1: {alone:.1f} requests/s")
    result = {
        "batched_per_s": round(batched, 2),
        "one_at_a_time_per_s": round(alone, 2),
        "ratio": round(batched / alone, 2),
        "identical": batched_answers == alone_answers,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
