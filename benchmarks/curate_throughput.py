"""Curation throughput: does a worker keep the model servers saturated, and how fast is its CPU path?

1. Request rate. A stub OpenAI-compatible server in its own process answers every /v1/chat/completions request
   after a fixed 200 ms. The ideal rate with C requests in flight is C / 0.2 s; we measure what is achieved at
   C = 64 and 256, two ways. `efficiency_C`: the client alone (C coroutines calling `ChatClient.complete` back to
   back; answers counted over S seconds after 1 s of warm-up), the figure the client libraries are compared on.
   `worker_efficiency_C`: a whole worker (`sailvl.curate.runner.Worker`, workers.concurrency = C, one recaption
   step) over C / 0.2 * S records of small distinct PNGs, timed from start to the committed output shard, which
   adds reading, decoding, the data URIs, the ordered writer and parquet.
   The server shares the machine with the client: on a small or busy machine both figures measure the machine
   too (the load average is printed before and after).
2. CPU path. A worker with no model steps over 640x480 JPEGs: decode (full resolution), exact pixel hash, resize
   for the perceptual hash, MinHash of the text, the output shard, then finalize (global dedup and the final
   shards). One thread in the worker's CPU pool; the figure is records per CPU-second of the whole process
   (`time.process_time`, every thread counted), i.e. records/s per core.

Run: `python benchmarks/curate_throughput.py [--seconds S] [--images N]`. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from sailvl.api import CurationRun, parse_resource
from sailvl.curate.client import ChatClient, Health, RetryPolicy, open_session
from sailvl.curate.finalize import finalize
from sailvl.curate.runner import Worker

LATENCY = 0.2
IN_FLIGHT = (64, 256)


def serve(port: int, latency: float) -> None:
    from aiohttp import web

    answer = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "A caption."}, "finish_reason": "stop"}],
    }
    payload = json.dumps(answer).encode()

    async def completions(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency)
        return web.Response(body=payload, content_type="application/json")

    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_post("/v1/chat/completions", completions)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the stub server did not start on port {port}")


async def client_rate(url: str, in_flight: int, seconds: float, warmup: float = 1.0) -> float:
    """Requests per second of `in_flight` coroutines calling the client back to back, counted over `seconds` after a
    warm-up (connections opening)."""
    policy = RetryPolicy()
    done: list[float] = []
    async with open_session(in_flight) as session:
        client = ChatClient(
            session, url, "stub", limit=asyncio.Semaphore(in_flight), health=Health(10**9), policy=policy
        )
        messages = [{"role": "user", "content": [{"type": "text", "text": "Describe this image in detail."}]}]
        start = time.perf_counter() + warmup
        stop = start + seconds

        async def loop() -> None:
            while time.perf_counter() < stop:
                await client.complete(messages, max_tokens=64, temperature=0.0)
                done.append(time.perf_counter())

        await asyncio.gather(*(loop() for _ in range(in_flight)))
    return sum(1 for t in done if start <= t < stop) / seconds


def small_pngs(folder: Path, count: int) -> Path:
    """A parquet shard of `count` distinct 48x48 PNG records with a line of alt text each."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        out = io.BytesIO()
        image.save(out, format="PNG")
        rows.append({"id": f"r{i:07d}", "image": out.getvalue(), "text": f"picture number {i}"})
    path = folder / "small.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def worker_run(name: str, input_uri: str, output: Path, steps: list[dict[str, Any]], concurrency: int) -> CurationRun:
    uses_model = any("recaption" in step for step in steps)
    doc = {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "CurationRun",
        "metadata": {"name": name},
        "spec": {
            "input": {"uri": input_uri, "format": "parquet"},
            "output": {"uri": str(output), "samplesPerShard": 100000},
            "models": [{"name": "stub", "model": {"uri": "/unused"}}] if uses_model else [],
            "steps": steps,
            "workers": {"concurrency": concurrency},
        },
    }
    run = parse_resource(doc)
    assert isinstance(run, CurationRun)
    return run


def worker_rate(url: str, input_uri: str, folder: Path, in_flight: int, records: int) -> float:
    steps = [{"recaption": {"model": "stub", "useAltText": True, "maxTokens": 64}}]
    run = worker_run(f"rate-{in_flight}", input_uri, folder / f"out-{in_flight}", steps, in_flight)
    start = time.perf_counter()
    report = asyncio.run(Worker(run, 0, 1, urls={"stub": url}).execute())
    seconds = time.perf_counter() - start
    assert report.counts.kept == records, report.message()
    return records / seconds


def jpegs(folder: Path, count: int) -> Path:
    """A parquet shard of `count` 640x480 JPEGs (gradients, shapes and noise, ~80 KB each) with alt text."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(count):
        low = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((640, 480), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 440))
            x1, y1 = x0 + int(rng.integers(10, 200)), y0 + int(rng.integers(10, 160))
            draw.ellipse((x0, y0, x1, y1), fill=(i % 256, 90, 30))
        noise = rng.integers(-12, 13, (480, 640, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=90)
        words = " ".join(f"w{int(w)}" for w in rng.integers(0, 500, 24))
        rows.append({"id": f"j{i:06d}", "image": out.getvalue(), "text": f"a photo of shapes {words}"})
    path = folder / "jpegs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=64)
    return path


def cpu_rate(input_uri: str, folder: Path, records: int) -> tuple[float, float]:
    steps = [{"dedup": {"image": "exact"}}, {"dedup": {"image": "phash", "text": "minhash"}}]
    run = worker_run("cpu", input_uri, folder / "out-cpu", steps, 16)
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(Worker(run, 0, 1, urls={}, threads=1).execute())
    report = finalize(run)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert report.manifest["counts"]["in"] == records
    return records / cpu, records / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each request-rate run")
    parser.add_argument("--images", type=int, default=600, help="640x480 JPEGs for the CPU path")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port, LATENCY), daemon=True)
    server.start()
    wait_for(port)
    url = f"http://127.0.0.1:{port}/v1"
    figures: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            asyncio.run(client_rate(url, 8, 1.0))  # warm up the server
            small = small_pngs(folder, int(max(IN_FLIGHT) / LATENCY * args.seconds))
            for in_flight in IN_FLIGHT:
                ideal = in_flight / LATENCY
                achieved = asyncio.run(client_rate(url, in_flight, args.seconds))
                n = int(ideal * args.seconds)
                pq.write_table(pq.read_table(small).slice(0, n), folder / f"in-{in_flight}.parquet")
                worker = worker_rate(url, str(folder / f"in-{in_flight}.parquet"), folder, in_flight, n)
                figures[f"efficiency_{in_flight}"] = round(achieved / ideal, 3)
                figures[f"worker_efficiency_{in_flight}"] = round(worker / ideal, 3)
                print(
                    f"{in_flight:>3} in flight, {LATENCY * 1000:.0f} ms latency: ideal {ideal:.0f} req/s; "
                    f"client {achieved:.0f} req/s ({achieved / ideal:.2f}); "
                    f"whole worker {worker:.0f} records/s ({worker / ideal:.2f})"
                )
            jpeg = jpegs(folder, args.images)
            per_core, per_second = cpu_rate(str(jpeg), folder, args.images)
            figures["cpu_records_per_s_per_core"] = round(per_core, 1)
            figures["cpu_records_per_s_wall"] = round(per_second, 1)
            print(
                f"CPU path on {args.images} 640x480 JPEGs (decode, exact hash, phash resize, MinHash, write, "
                f"finalize): {per_core:.0f} records per CPU-second, {per_second:.0f} records/s wall"
            )
    finally:
        server.terminate()
        server.join(10)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
