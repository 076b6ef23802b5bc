"""Evaluation throughput: the item rate `sailvl eval` achieves against a server of fixed latency, as a share of the
ideal rate (requests in flight / latency), at 8 and 64 in flight.

The stub OpenAI server runs in its own process (so its work does not share the evaluator's core) and answers every
chat completion after exactly `--latency` seconds (default 0.5 s, on the short side of a served 2B VLM's request).
The evaluator runs the real path end to end: a VLMEvalKit TSV of distinct PNG images is loaded and checked, every
item is asked with its image as a data URI, each answer appended to the predictions file, graded, and results.json
written; the whole run is timed, so fixed costs count against it. The peer, measured in the same run against the same
server: a bare aiohttp client sending the same requests with no evaluation around them (what this harness allows).
Goal: efficiency at 64 in flight >= 0.9.

Run: `python benchmarks/eval_throughput.py [--items N] [--latency S]`. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing
import socket
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from PIL import Image

from sailvl.api.evalsuite import EvalSuiteSpec
from sailvl.eval.runner import Endpoints, SuiteRunner


def _serve(port: int, latency: float, ready: multiprocessing.synchronize.Event) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency)
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "B"}}]})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "model"}]})

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_benchmark(folder: Path, items: int) -> None:
    """A multiple-choice TSV in the VLMEvalKit layout: one distinct small PNG per item, inlined as base64."""
    with (folder / "MMStar.tsv").open("w", encoding="utf-8") as handle:
        handle.write("index\timage\tquestion\tA\tB\tanswer\n")
        for i in range(items):
            image = Image.new("RGB", (64, 48), (i % 256, (i // 256) % 256, 128))
            encoded = io.BytesIO()
            image.save(encoded, format="PNG")
            handle.write(f"{i}\t{base64.b64encode(encoded.getvalue()).decode()}\tQuestion {i}?\tcat\tdog\tB\n")


def run_once(url: str, data: Path, items: int, concurrency: int) -> float:
    """Seconds for one whole evaluation of the first `items` items, into a fresh output folder."""
    spec = EvalSuiteSpec.model_validate(
        {
            "model": {"uri": "/unused"},
            "benchmarks": ["MMStar"],
            "overrides": {"MMStar": {"limit": items}},
            "data": {"uri": str(data)},
            "workers": {"concurrency": concurrency},
        }
    )
    with tempfile.TemporaryDirectory() as out:
        runner = SuiteRunner(spec, endpoints=Endpoints(model=url), output=Path(out))
        start = time.perf_counter()
        summary = asyncio.run(runner.run())
        elapsed = time.perf_counter() - start
    assert summary["results"]["MMStar"] == 100.0, summary["results"]
    return elapsed


def run_bare(url: str, data: Path, items: int, concurrency: int) -> float:
    """Seconds for a bare aiohttp client to send the same requests, `concurrency` in flight."""
    from sailvl.eval import registry
    from sailvl.eval.client import user_message
    from sailvl.eval.loading import load_items

    bench = registry.get("MMStar")
    bodies = [
        {"model": "model", "messages": [user_message(bench.prompt(item), item.images)], "max_tokens": 128}
        for item in load_items(bench, str(data), limit=items)
    ]

    async def send_all() -> float:
        gate = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def one(body: dict[str, object]) -> None:
                async with gate, session.post(url + "/chat/completions", json=body) as response:
                    await response.json()

            start = time.perf_counter()
            await asyncio.gather(*(one(body) for body in bodies))
            return time.perf_counter() - start

    return asyncio.run(send_all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2560, help="items at 64 in flight (8 in flight: an eighth)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the stub takes per request")
    args = parser.parse_args()

    port = _free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, args.latency, ready), daemon=True)
    server.start()
    ready.wait(30)
    time.sleep(0.5)  # run_app binds after the event is set
    url = f"http://127.0.0.1:{port}/v1"
    figures: dict[str, float] = {"latency_s": args.latency}
    try:
        with tempfile.TemporaryDirectory() as data:
            write_benchmark(Path(data), args.items)
            for concurrency in (8, 64):
                items = args.items if concurrency == 64 else args.items // 8
                elapsed = run_once(url, Path(data), items, concurrency)
                achieved = items / elapsed
                ideal = concurrency / args.latency
                figures[f"items_per_s_{concurrency}"] = round(achieved, 1)
                figures[f"ideal_items_per_s_{concurrency}"] = round(ideal, 1)
                figures[f"efficiency_{concurrency}"] = round(achieved / ideal, 4)
                print(
                    f"{concurrency:3d} in flight: {items} items in {elapsed:.2f} s = {achieved:.1f} items/s; "
                    f"ideal {ideal:.1f} items/s; efficiency {achieved / ideal:.3f}"
                )
            bare = args.items / run_bare(url, Path(data), args.items, 64)
            figures["bare_client_items_per_s_64"] = round(bare, 1)
            figures["bare_client_efficiency_64"] = round(bare / (64 / args.latency), 4)
            figures["vs_bare_client_64"] = round(figures["items_per_s_64"] / bare, 4)
            print(
                f" 64 in flight, bare aiohttp client (peer): {bare:.1f} items/s, efficiency "
                f"{figures['bare_client_efficiency_64']:.3f}; sailvl eval achieves {figures['vs_bare_client_64']:.3f} "
                "of its rate"
            )
    finally:
        server.terminate()
        server.join(10)
    print(f"goal: efficiency_64 >= 0.9 -> {'met' if figures['efficiency_64'] >= 0.9 else 'NOT met'}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
