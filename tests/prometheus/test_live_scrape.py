"""sailvl's real processes scraped by a real Prometheus, labelled as the chart's ServiceMonitor and PodMonitor label
them: every dashboard panel shows data for the namespace its variable offers, and a failed stage's alert names it.

The processes: the operator (against the Kubernetes emulator) with a stage reading a real trainer's progress, a
stage that fails, a CurationRun and an EvalSuite; `sailvl train`, `sailvl serve`, a curation worker and
`sailvl eval`. Prometheus gets static targets carrying the `__meta_kubernetes_*` labels Kubernetes service
discovery would give those pods, and the relabelings prometheus-operator generates for the rendered monitors,
their own relabelings and `honorLabels` included.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sailvl.model.build import build_preset
from sailvl.model.checkpoint import export_checkpoint
from tests.chart_values import CHART
from tests.manifests import CURATION, EVAL, mutated
from tests.operator.conftest import Kube, eventually, free_port
from tests.operator.controllers import make_available, set_job, worker_pod
from tests.operator.kubeflow import fail, mark_running, pod, stage
from tests.prometheus.conftest import NAMESPACE, one, render_chart, write_rules
from tests.trainkit import tiny_stage, write_spec

pytestmark = [pytest.mark.prometheus, pytest.mark.k8s]
LAB = "lab"  # the namespace of the resources (the emulator's)
SCORES = {"results": {"shapes_vqa": 81.25, "shapes_count": 62.5}, "average": 71.875, "groups": {}}
# Panels that cannot show data here, and why.
EXPECTED_EMPTY = {
    "vLLM KV-cache usage": "vLLM only: `sailvl serve` has no paged KV cache (the panel's description says so)",
    "MFU": "no known peak FLOP/s on a CPU: the trainer leaves the gauge out",
}


# --- Prometheus configured as prometheus-operator configures it for the rendered monitors ----------------------


def _relabelings(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A monitor's own relabelings in Prometheus' spelling (sourceLabels -> source_labels ...)."""
    out = []
    for rule in rendered:
        out.append({re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in rule.items()})
    return out


def scrape_configs(objects: list[dict[str, Any]], targets: dict[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    """One scrape job per monitor endpoint, with the target labels prometheus-operator derives from Kubernetes'
    service discovery, then the monitor's own relabelings; `targets` maps a port name to the pods behind it."""
    service_monitor = one(objects, "ServiceMonitor")
    pod_monitor = one(objects, "PodMonitor")
    jobs = []
    for i, endpoint in enumerate(service_monitor["spec"]["endpoints"]):
        jobs.append(
            {
                "job_name": f"serviceMonitor/{NAMESPACE}/{service_monitor['metadata']['name']}/{i}",
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "scrape_interval": "1s",
                "metrics_path": endpoint.get("path", "/metrics"),
                "static_configs": [{"targets": [t["address"]], "labels": t["meta"]} for t in targets["operator"]],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                    {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
                    {"target_label": "endpoint", "replacement": endpoint["port"]},
                    *_relabelings(endpoint.get("relabelings", [])),
                ],
            }
        )
    name = pod_monitor["metadata"]["name"]
    for i, endpoint in enumerate(pod_monitor["spec"]["podMetricsEndpoints"]):
        jobs.append(
            {
                "job_name": f"podMonitor/{NAMESPACE}/{name}/{i}",
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "scrape_interval": "1s",
                "metrics_path": endpoint.get("path", "/metrics"),
                "static_configs": [
                    {"targets": [t["address"]], "labels": t["meta"]} for t in targets.get(endpoint["port"], [])
                ],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"target_label": "job", "replacement": f"{NAMESPACE}/{name}"},
                    {"target_label": "endpoint", "replacement": endpoint["port"]},
                    *_relabelings(endpoint.get("relabelings", [])),
                ],
            }
        )
    return jobs


def pod_target(port: int, namespace: str, pod_name: str, container: str, labels: dict[str, str]) -> dict[str, Any]:
    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_container_name": container,
    }
    for key, value in labels.items():  # how Kubernetes SD names pod labels
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return {"address": f"127.0.0.1:{port}", "meta": meta}


def owned(kind: str, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "sailvl-operator", "sailvl.io/kind": kind, "sailvl.io/name": name}


class Prometheus:
    def __init__(self, binary: Path, folder: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(binary), f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.started = time.time()

    def api(self, path: str, **params: Any) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# --- the dashboards ---------------------------------------------------------------------------------------------


def dashboards() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((CHART / "dashboards").glob("*.json")):
        yield path.stem, json.loads(path.read_text())


def label_values(prom: Prometheus, query: str, chosen: dict[str, str]) -> list[str]:
    """Grafana's `label_values(selector, label)`, the way its Prometheus data source asks for it."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert match, query
    selector = substitute(match.group(1), chosen)
    return sorted(prom.api(f"label/{match.group(2)}/values", **{"match[]": selector}, start=prom.started))


def substitute(expr: str, chosen: dict[str, str]) -> str:
    for name, value in chosen.items():
        expr = expr.replace(f"${name}", value)
    return expr


# --- the processes ----------------------------------------------------------------------------------------------


def _spawn(argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer:\n{log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.2)


async def _finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    code = await asyncio.to_thread(process.wait, timeout)
    assert code == 0, log.read_text(errors="replace")[-3000:]


SAILVL = [sys.executable, "-m", "sailvl"]


async def test_every_dashboard_panel_shows_data_for_the_namespace_its_variable_offers(
    prometheus: Path, kube: Kube, operator_factory: Callable[..., Any], tmp_path: Path
) -> None:
    objects = render_chart()
    ports = {name: free_port() for name in ("operator", "trainer", "serve", "curate", "eval")}
    operator_pod = {
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_service_name": "sailvl",
        "__meta_kubernetes_pod_name": "sailvl-7d9c5-abcde",
        "__meta_kubernetes_pod_container_name": "operator",
    }
    targets = {
        "operator": [{"address": f"127.0.0.1:{ports['operator']}", "meta": operator_pod}],
        "metrics": [
            pod_target(ports["trainer"], LAB, "pretrain-train-a0-master-0", "pytorch", owned("TrainStage", "pretrain")),
            pod_target(ports["curate"], LAB, "recaption-workers-0-x7k2p", "curate", owned("CurationRun", "recaption")),
            pod_target(ports["eval"], LAB, "probe-eval-0-q8w3e", "eval", owned("EvalSuite", "probe")),
        ],
        "http": [
            pod_target(ports["serve"], LAB, "recaption-vllm-captioner-5d8f7-0", "vllm", owned("CurationRun", "recaption")),
        ],
    }  # fmt: skip
    rules = write_rules(objects, tmp_path)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": scrape_configs(objects, targets),
    }
    prom = Prometheus(prometheus, tmp_path, config)
    children: list[subprocess.Popen[bytes]] = []
    try:
        await eventually(prom.ready, timeout=60, what="Prometheus ready")
        children += await _run_everything(kube, operator_factory, ports, tmp_path)
        await asyncio.sleep(4)  # a few more scrapes of the operator and the server
        _assert_dashboards(prom)
        _assert_failed_stage_alert(prom)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(30)
        prom.stop()


async def _run_everything(
    kube: Kube, operator_factory: Callable[..., Any], ports: dict[str, int], tmp_path: Path
) -> list[subprocess.Popen[bytes]]:
    """Start the processes and the resources; return once the workers are done (server and operator still up)."""
    checkpoint = export_checkpoint(build_preset("tiny", seed=0, tile_size=56, max_tiles=2), tmp_path / "model")
    serve_log = tmp_path / "serve.log"
    serve = _spawn([*SAILVL, "serve", "--model", str(checkpoint), "--port", str(ports["serve"]),
                    "--served-model-name", "captioner"], serve_log)  # fmt: skip
    trainer_log = tmp_path / "train.log"
    stage_doc = tiny_stage(tmp_path / "ckpt", **{"budget.steps": 200, "checkpoint.intervalSteps": 1000})
    trainer = _spawn([*SAILVL, "train", "--spec", str(write_spec(tmp_path, stage_doc, "stage.yaml"))], trainer_log,
                     SAILVL_METRICS_PORT=str(ports["trainer"]), OMP_NUM_THREADS="1")  # fmt: skip
    children = [serve, trainer]
    _wait_http(f"http://127.0.0.1:{ports['serve']}/health", serve, serve_log)
    _wait_http(f"http://127.0.0.1:{ports['trainer']}/metrics", trainer, trainer_log)

    await operator_factory(metrics_port=ports["operator"], trainer_metrics_port=ports["trainer"])
    # A stage that reads the real trainer's progress, and one that fails at once.
    await kube.create(stage("pretrain"))
    await eventually(lambda: kube.get("PyTorchJob", "pretrain-train-a0"), what="pretrain's job")
    await kube.create(pod("pretrain-train-a0"))
    await mark_running(kube, "pretrain-train-a0")
    await kube.create(stage("ho-fail", **{"spec.maxRestarts": 0}))
    await eventually(lambda: kube.get("PyTorchJob", "ho-fail-train-a0"), what="ho-fail's job")
    await fail(kube, "ho-fail-train-a0")
    # A CurationRun (waiting for its model) and an EvalSuite that finishes with scores.
    await kube.create(mutated(CURATION, {"metadata.name": "recaption"}))
    await kube.create(mutated(EVAL, {"metadata.name": "probe", "spec.model": {"uri": "pvc://ckpt/align/final"}}))
    await eventually(lambda: kube.get("Deployment", "probe-vllm-model"), what="probe's server")
    await make_available(kube, "probe-vllm-model")
    await eventually(lambda: kube.get("Job", "probe-eval"), what="probe's eval Job")
    await set_job(kube, "probe-eval", active=1)
    await kube.create(worker_pod("EvalSuite", "probe", "eval", "eval", exit_code=0, message=SCORES))
    await set_job(kube, "probe-eval", ("Complete", "CompletionsReached", ""), succeeded=1)

    # The workers, against the real server: a curation worker that keeps some records and drops others, and an
    # evaluation.
    url = f"http://127.0.0.1:{ports['serve']}/v1"
    curation = mutated(CURATION, {"metadata.name": "recaption", "spec.models[0].model": {"uri": str(checkpoint)}})
    curation["spec"]["input"] = {"uri": "synthetic://shapes?n=48&seed=2&split=alt&size=96-128"}
    curation["spec"]["output"] = {"uri": str(tmp_path / "curated"), "samplesPerShard": 8}
    curation["spec"]["steps"] = [{"recaption": {"model": "captioner", "maxTokens": 24}}, {"filter": {"minChars": 60}}]
    curation["spec"]["workers"] = {"parallelism": 1, "concurrency": 2}
    curate_log = tmp_path / "curate.log"
    curate = _spawn([*SAILVL, "curate", "--spec", str(write_spec(tmp_path, curation, "curation.yaml")), "--worker", "0",
                     "--workers", "1"], curate_log, SAILVL_MODEL_URL_CAPTIONER=url,
                    SAILVL_METRICS_PORT=str(ports["curate"]))  # fmt: skip
    suite = mutated(EVAL, {"metadata.name": "probe", "spec.model": {"uri": str(checkpoint)}})
    suite["spec"]["data"] = {"uri": "synthetic://shapes?n=24&seed=3"}
    suite["spec"]["maxTiles"] = 2
    eval_log = tmp_path / "eval.log"
    evaluation = _spawn([*SAILVL, "eval", "--spec", str(write_spec(tmp_path, suite, "suite.yaml"))], eval_log,
                        SAILVL_MODEL_URL_MODEL=url, SAILVL_METRICS_PORT=str(ports["eval"]))  # fmt: skip
    children += [curate, evaluation]
    await eventually(lambda: (kube.get("TrainStage", "ho-fail") or {}).get("status", {}).get("phase") == "Failed",
                     timeout=30, what="ho-fail Failed")  # fmt: skip
    progress = lambda: ((kube.get("TrainStage", "pretrain") or {}).get("status") or {}).get("progress") or {}  # noqa: E731
    await eventually(lambda: progress().get("step"), timeout=60, what="pretrain's progress from the trainer")
    await _finish(curate, curate_log)
    await _finish(evaluation, eval_log)
    await _finish(trainer, trainer_log)
    return children


def _assert_dashboards(prom: Prometheus) -> None:
    end = time.time()
    empty, checked = {}, 0
    for name, dashboard in dashboards():
        chosen: dict[str, str] = {}
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            offered = label_values(prom, variable["query"]["query"], chosen)
            if variable["name"] == "namespace":  # the resources' own namespace, not the operator pod's
                assert offered == [LAB], f"{name}: $namespace offers {offered}"
            assert offered, f"{name}: ${variable['name']} offers nothing"
            chosen[variable["name"]] = "|".join(re.escape(v) for v in offered)
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], chosen)
                result = prom.api("query_range", query=expr, start=prom.started, end=end, step="1s")["result"]
                checked += 1
                if not result:
                    empty[panel["title"]] = expr
    unexplained = {title: expr for title, expr in empty.items() if title not in EXPECTED_EMPTY}
    assert unexplained == {}, json.dumps(unexplained, indent=2)
    assert set(empty) == set(EXPECTED_EMPTY), f"expected empty, yet with data: {set(EXPECTED_EMPTY) - set(empty)}"
    assert checked >= 25


def _assert_failed_stage_alert(prom: Prometheus) -> None:
    alerts = [a for a in prom.api("alerts")["alerts"] if a["labels"]["alertname"] == "SailvlStageFailed"]
    assert alerts, prom.api("alerts")
    (alert,) = alerts
    assert (alert["labels"]["namespace"], alert["labels"]["name"]) == (LAB, "ho-fail")
    assert alert["annotations"]["summary"] == "TrainStage lab/ho-fail failed"
    assert "kubectl describe ts ho-fail -n lab" in alert["annotations"]["description"]
