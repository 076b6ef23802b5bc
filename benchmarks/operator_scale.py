"""Operator scale: the sailvl operator in its own process (`python -m sailvl_operator`, as in production)
against the Kubernetes emulator in another, next to a trivial kopf operator (one ConfigMap per object, async
handlers, the same emulator) measured in the same run.

1. Burst: 100 chains of 5 TrainStages (500 objects, each stage starting from the previous one's checkpoint)
   applied at once to a running operator. Figures: seconds until all 100 first-stage PyTorchJobs exist, and until
   every stage carries its conditions (the other 400 wait with DependenciesReady=False). The trivial operator
   gets the same 500 objects: seconds until each has its child.
2. Steady: pairs (dependency, dependent) are set up; then 50 dependencies per second are marked Succeeded, with
   20 ms of latency on every API request. Figure: p50/p99 from the dependency's Succeeded (as a watch sees it) to
   the dependent's PyTorchJob (as a watch sees it). The trivial operator creates the dependent's child on the
   same event.
3. Memory: peak RSS of the operator process over both loads, and the RSS of its imports alone.

The emulator drops served requests and finds objects by key (tests/operator/emulator.py): stock kmock 0.8
rescans every served request on each new one. Both operators and the emulator share this machine's cores.

Run: `python benchmarks/operator_scale.py [--chains 100] [--rate 50] [--seconds 8]`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NAMESPACE = "bench"
STAGES = "/apis/sailvl.io/v1alpha1/namespaces/bench/trainstages"
JOBS = "/apis/kubeflow.org/v1/namespaces/bench/pytorchjobs"
CONFIGMAPS = "/api/v1/namespaces/bench/configmaps"


# -- the processes ------------------------------------------------------------------------------------------
async def _serve_emulator(port_file: str, latency: float) -> None:
    import kmock

    from tests.operator.emulator import Emulator, declare_kubernetes

    emulator = Emulator(keep_requests=False, keep_history=False, latency=latency)
    declare_kubernetes(emulator)
    async with emulator, kmock.Server(emulator) as server:
        Path(port_file).write_text(str(server.port))
        await asyncio.Event().wait()


PEER = """
import asyncio, aiohttp, kopf, os
URL = os.environ["BENCH_API"]
session = None

@kopf.on.startup()
async def start(settings, **_):
    global session
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="peer.bench")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="peer.bench")
    session = aiohttp.ClientSession(URL)

@kopf.on.login()
def login(**_):
    return kopf.ConnectionInfo(server=URL)

async def child(namespace, name):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-child"}, "data": {"k": "v"}}
    async with session.post(f"/api/v1/namespaces/{namespace}/configmaps", json=body) as rsp:
        await rsp.read()

@kopf.on.create("sailvl.io", "v1alpha1", "trainstages", labels={"bench/load": "burst"})
async def created(namespace, name, **_):
    await child(namespace, name)

@kopf.on.event("sailvl.io", "v1alpha1", "trainstages", labels={"bench/load": "steady"})
async def event(body, namespace, **_):
    dependent = body.get("metadata", {}).get("annotations", {}).get("bench/dependent")
    if dependent and body.get("status", {}).get("phase") == "Succeeded":
        await child(namespace, dependent)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def cluster(workdir: Path, latency: float, operator: str) -> AsyncIterator[tuple[str, psutil.Process]]:
    """The emulator and an operator (`sailvl` or `peer`) in their own processes; yields the API URL."""
    port_file = workdir / f"port-{time.monotonic_ns()}"
    emulator = subprocess.Popen(
        [sys.executable, __file__, "--emulator", str(port_file), "--latency", str(latency)], cwd=REPO
    )
    operator_proc: subprocess.Popen[bytes] | None = None
    try:
        while not port_file.exists() or not port_file.read_text():
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "current-context": "bench",
                    "clusters": [{"name": "bench", "cluster": {"server": url}}],
                    "users": [{"name": "bench", "user": {}}],
                    "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
                }
            )
        )
        health = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "BENCH_API": url,
            "SAILVL_PEERING": "none",
            "SAILVL_OPERATOR_METRICS_PORT": "0",
            "SAILVL_OPERATOR_HEALTH_PORT": str(health),
            "SAILVL_LOG_LEVEL": os.environ.get("SAILVL_LOG_LEVEL", "WARNING"),
        }
        if operator == "sailvl":
            command = [sys.executable, "-m", "sailvl_operator"]
        else:
            peer = workdir / "peer.py"
            peer.write_text(PEER)
            command = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "-q", str(peer)]
            command += ["--liveness", f"http://127.0.0.1:{health}/healthz"]
        log = (workdir / f"{operator}.log").open("ab")
        operator_proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{health}/healthz") as rsp:
                        if rsp.status == 200:
                            break
                if operator_proc.poll() is not None:
                    raise RuntimeError(f"the {operator} operator exited; see {workdir / (operator + '.log')}")
                await asyncio.sleep(0.05)
        yield url, psutil.Process(operator_proc.pid)
    finally:
        for proc in (operator_proc, emulator):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


# -- watching what happens ----------------------------------------------------------------------------------
class Watch:
    """First-seen times of objects in a watch stream, by name, under a condition on the object."""

    def __init__(self, session: aiohttp.ClientSession, path: str, accept: Any = None) -> None:
        self.seen: dict[str, float] = {}
        self.last_event = time.monotonic()
        self._accept = accept or (lambda obj: True)
        self._task = asyncio.create_task(self._run(session, path))

    async def _run(self, session: aiohttp.ClientSession, path: str) -> None:
        async with session.get(path, params={"watch": "true"}, timeout=aiohttp.ClientTimeout(total=None)) as rsp:
            async for line in rsp.content:
                event = json.loads(line)
                self.last_event = time.monotonic()
                obj = event["object"]
                name = obj["metadata"]["name"]
                if name not in self.seen and event["type"] != "DELETED" and self._accept(obj):
                    self.seen[name] = time.monotonic()

    async def until(self, names: set[str], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not names <= set(self.seen):
            if time.monotonic() > deadline:
                missing = sorted(names - set(self.seen))
                raise TimeoutError(f"{len(missing)} never appeared, e.g. {missing[:3]}")
            await asyncio.sleep(0.01)
        return max(self.seen[n] for n in names)

    async def quiet(self, seconds: float, timeout: float) -> None:
        """Wait until no event has arrived for `seconds` (the operator has caught up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_event < seconds and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self._task.cancel()


def stage(
    name: str, *, after: str | None = None, load: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    model: dict[str, Any] = {"init": {"stage": after}} if after else {"preset": "tiny"}
    return {
        "apiVersion": "sailvl.io/v1alpha1",
        "kind": "TrainStage",
        "metadata": {"name": name, "labels": {"bench/load": load}, "annotations": annotations or {}},
        "spec": {
            "model": model,
            "trainable": ["projector"],
            "data": {"mixture": [{"name": "shapes", "source": {"uri": "synthetic://shapes?n=64"}}]},
            "budget": {"steps": 100},
            "optimizer": {"lr": 1e-3},
            "batch": {"globalSize": 8},
            "checkpoint": {"uri": f"pvc://ckpt/{name}"},
        },
    }


async def create_all(session: aiohttp.ClientSession, docs: list[dict[str, Any]], concurrency: int = 16) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for doc in docs:
        queue.put_nowait(doc)

    async def worker() -> None:
        while not queue.empty():
            doc = queue.get_nowait()
            async with session.post(STAGES, json=doc) as rsp:
                assert rsp.status == 201, await rsp.text()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


class Peak:
    """The peak RSS of a process, sampled every 100 ms."""

    def __init__(self, process: psutil.Process) -> None:
        self.mb = 0.0
        self._process = process
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.mb = max(self.mb, self._process.memory_info().rss / 2**20)
            await asyncio.sleep(0.1)

    def stop(self) -> float:
        self._task.cancel()
        with contextlib.suppress(psutil.Error):
            self.mb = max(self.mb, self._process.memory_info().rss / 2**20)
        return self.mb


# -- the loads ----------------------------------------------------------------------------------------------
async def burst(workdir: Path, chains: int, operator: str) -> dict[str, float]:
    async with cluster(workdir, 0.0, operator) as (url, process), aiohttp.ClientSession(url) as session:
        peak = Peak(process)
        children = Watch(session, JOBS if operator == "sailvl" else CONFIGMAPS)
        conditioned = Watch(session, STAGES, lambda obj: bool((obj.get("status") or {}).get("conditions")))
        docs = [
            stage(f"c{c}-s{s}", after=f"c{c}-s{s - 1}" if s else None, load="burst")
            for c in range(chains)
            for s in range(5)
        ]
        await asyncio.sleep(0.5)  # the watches are open
        start = time.monotonic()
        await create_all(session, docs)
        if operator == "sailvl":
            first = await children.until({f"c{c}-s0-train-a0" for c in range(chains)}, 120) - start
            everything = await conditioned.until({d["metadata"]["name"] for d in docs}, 120) - start
            result = {"burst_first_jobs_s": first, "burst_all_conditions_s": everything}
        else:
            result = {
                "burst_children_s": await children.until({d["metadata"]["name"] + "-child" for d in docs}, 120) - start
            }
        children.close()
        conditioned.close()
        result["rss_mb"] = peak.stop()
        return result


async def steady(workdir: Path, rate: float, seconds: float, operator: str) -> dict[str, float]:
    pairs = int(rate * seconds)
    async with cluster(workdir, 0.020, operator) as (url, process), aiohttp.ClientSession(url) as session:
        peak = Peak(process)
        deps = [stage(f"dep{i}", load="steady", annotations={"bench/dependent": f"next{i}"}) for i in range(pairs)]
        nexts = [stage(f"next{i}", after=f"dep{i}", load="steady") for i in range(pairs)]
        waiting = Watch(session, STAGES, lambda obj: (obj.get("status") or {}).get("phase") == "Waiting")
        await asyncio.sleep(0.3)
        await create_all(session, deps + nexts)
        if operator == "sailvl":  # the set-up is done when every dependent waits and every dependency has its job
            await waiting.until({n["metadata"]["name"] for n in nexts}, 180)
            setup = Watch(session, JOBS)
            await setup.until({f"dep{i}-train-a0" for i in range(pairs)}, 180)
            setup.close()
        await waiting.quiet(2.0, 120)  # and the operator has handled every event of it
        waiting.close()
        succeeded = Watch(session, STAGES, lambda obj: (obj.get("status") or {}).get("phase") == "Succeeded")
        children = Watch(session, JOBS if operator == "sailvl" else CONFIGMAPS)
        await asyncio.sleep(0.3)
        status = {
            "status": {
                "phase": "Succeeded",
                "conditions": [
                    {
                        "type": "Succeeded",
                        "status": "True",
                        "reason": "Completed",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
                "checkpoint": {"final": "pvc://ckpt/dep/final"},
            }
        }
        start = time.monotonic()
        patches = []
        for i in range(pairs):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            patches.append(asyncio.create_task(_patch_status(session, f"dep{i}", status)))
        await asyncio.gather(*patches)
        child = "next{}-train-a0" if operator == "sailvl" else "next{}-child"
        await children.until({child.format(i) for i in range(pairs)}, 120)
        await succeeded.until({f"dep{i}" for i in range(pairs)}, 30)
        latencies = sorted(children.seen[child.format(i)] - succeeded.seen[f"dep{i}"] for i in range(pairs))
        children.close()
        succeeded.close()
        return {
            "steady_p50_s": statistics.median(latencies),
            "steady_p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "rss_mb": peak.stop(),
        }


async def _patch_status(session: aiohttp.ClientSession, name: str, patch: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/merge-patch+json"}
    async with session.patch(f"{STAGES}/{name}/status", data=json.dumps(patch), headers=headers) as rsp:
        assert rsp.status == 200, await rsp.text()


def import_rss_mb() -> float:
    code = (
        "import resource, sailvl_operator.main, sailvl_operator.handlers;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours_burst = await burst(workdir, args.chains, "sailvl")
        peer_burst = await burst(workdir, args.chains, "peer")
        ours_steady = await steady(workdir, args.rate, args.seconds, "sailvl")
        peer_steady = await steady(workdir, args.rate, args.seconds, "peer")
    objects = args.chains * 5
    figures = {
        "objects": objects,
        "burst_first_jobs_s": round(ours_burst["burst_first_jobs_s"], 3),
        "burst_all_conditions_s": round(ours_burst["burst_all_conditions_s"], 3),
        "peer_burst_children_s": round(peer_burst["burst_children_s"], 3),
        "steady_rate_per_s": args.rate,
        "steady_p50_s": round(ours_steady["steady_p50_s"], 4),
        "steady_p99_s": round(ours_steady["steady_p99_s"], 4),
        "peer_steady_p50_s": round(peer_steady["steady_p50_s"], 4),
        "peer_steady_p99_s": round(peer_steady["steady_p99_s"], 4),
        "rss_mb": round(max(ours_burst["rss_mb"], ours_steady["rss_mb"]), 1),
        "peer_rss_mb": round(max(peer_burst["rss_mb"], peer_steady["rss_mb"]), 1),
        "import_rss_mb": round(import_rss_mb(), 1),
    }
    figures["burst_conditions_vs_peer"] = round(figures["burst_all_conditions_s"] / figures["peer_burst_children_s"], 2)
    figures["steady_p99_vs_peer"] = round(figures["steady_p99_s"] / figures["peer_steady_p99_s"], 2)
    return figures


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    ms = {k: round(v * 1000) for k, v in r.items() if k.startswith(("steady_p", "peer_steady_p"))}
    print(f"burst ({r['objects']} TrainStages in chains of 5, applied at once):")
    print(f"  all {args.chains} first-stage PyTorchJobs exist after {r['burst_first_jobs_s']:.2f} s (goal <= 5 s)")
    print(f"  every stage carries its conditions after {r['burst_all_conditions_s']:.2f} s")
    print(
        f"  trivial kopf operator, one child per object: {r['peer_burst_children_s']:.2f} s "
        f"(ours/peer {r['burst_conditions_vs_peer']:.2f}x)"
    )
    print(f"steady ({args.rate:g} dependencies/s marked Succeeded, 20 ms API latency):")
    print(f"  dependent's job after p50 {ms['steady_p50_s']} ms, p99 {ms['steady_p99_s']} ms (goal p99 <= 150 ms)")
    print(
        f"  trivial operator: p50 {ms['peer_steady_p50_s']} ms, p99 {ms['peer_steady_p99_s']} ms "
        f"(ours/peer {r['steady_p99_vs_peer']:.2f}x)"
    )
    print(
        f"memory: operator peak RSS {r['rss_mb']:.0f} MB (goal <= 180 MB), imports alone {r['import_rss_mb']:.0f} MB, "
        f"trivial operator {r['peer_rss_mb']:.0f} MB"
    )
    load = os.getloadavg()
    print(f"load average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=100, help="chains of 5 stages in the burst (default 100)")
    parser.add_argument("--rate", type=float, default=50.0, help="dependencies marked Succeeded per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of the steady load")
    parser.add_argument("--emulator", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.emulator:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_emulator(arguments.emulator, arguments.latency))
        sys.exit(0)
    result = asyncio.run(main(arguments))
    report(result, arguments)
    print(json.dumps(result))
