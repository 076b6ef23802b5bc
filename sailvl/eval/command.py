"""`sailvl eval` as a process: read the spec and the environment (DESIGN §4), run the suite, report.

Environment: `SAILVL_MODEL_URL_MODEL` (the model under test's OpenAI base URL, required), `SAILVL_MODEL_URL_JUDGE`
(required when the spec has a judge), `SAILVL_METRICS_PORT` (serve /metrics; unset or 0: no endpoint) and
`SAILVL_TERMINATION_LOG` (where the `{results, average, groups}` message goes). Exit status: 0 done, 2 invalid spec
or configuration (never retried), 1 anything a retry may fix (the server unreachable after every retry).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sailvl.api.evalsuite import EvalSuite, EvalSuiteSpec
from sailvl.api.manifest import ManifestError, load_yaml, parse_resource
from sailvl.eval.client import RetryPolicy, ServerUnavailable
from sailvl.eval.exporter import EvalMetrics, serve
from sailvl.eval.items import BenchmarkFileError
from sailvl.eval.loading import ConfigError, output_dir
from sailvl.eval.report import table, write_termination_message
from sailvl.eval.runner import Endpoints, SuiteRunner

log = logging.getLogger("sailvl.eval")
EXIT_OK, EXIT_RETRY, EXIT_INVALID = 0, 1, 2
MODEL_URL, JUDGE_URL, METRICS_PORT = "SAILVL_MODEL_URL_MODEL", "SAILVL_MODEL_URL_JUDGE", "SAILVL_METRICS_PORT"


@dataclass(frozen=True, kw_only=True)
class Settings:
    endpoints: Endpoints
    metrics_port: int | None
    output: Path | None


def load_spec(path: Path) -> EvalSuite:
    """The one EvalSuite in a manifest file (YAML, or the resolved JSON); ConfigError naming every problem."""
    try:
        documents = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the spec: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML or JSON: {exc}") from None
    suites = [d for d in documents if isinstance(d, dict) and d.get("kind") == "EvalSuite"]
    if len(suites) != 1:
        kinds = [d.get("kind") if isinstance(d, dict) else type(d).__name__ for d in documents]
        raise ConfigError(f"{path}: expected exactly one EvalSuite document; found kinds {kinds}")
    try:
        resource = parse_resource(suites[0])
    except ManifestError as exc:
        raise ConfigError(f"{path}: invalid EvalSuite:\n" + "\n".join(f"  {issue}" for issue in exc.issues)) from None
    assert isinstance(resource, EvalSuite)
    return resource


def settings_from(spec: EvalSuiteSpec, output: str | None, env: Mapping[str, str]) -> Settings:
    model_url = env.get(MODEL_URL)
    if not model_url:
        raise ConfigError(f"{MODEL_URL} must give the OpenAI base URL of the model under test (…/v1)")
    judge_url = env.get(JUDGE_URL) or None
    if spec.judge is not None and judge_url is None:
        raise ConfigError(f"spec.judge is set: {JUDGE_URL} must give the judge's OpenAI base URL (…/v1)")
    port_text = env.get(METRICS_PORT, "").strip()
    if port_text and not (port_text.isdigit() and int(port_text) <= 65535):
        raise ConfigError(f"{METRICS_PORT} must be a port number (0 disables the endpoint); found {port_text!r}")
    folder = output or (spec.output.uri if spec.output else None)
    return Settings(
        endpoints=Endpoints(model=model_url, judge=judge_url if spec.judge is not None else None),
        metrics_port=int(port_text) if port_text and int(port_text) else None,
        output=output_dir(folder) if folder else None,
    )


async def evaluate(spec: EvalSuiteSpec, settings: Settings, retry: RetryPolicy | None = None) -> dict[str, Any]:
    """Run the suite with the metrics endpoint up for its duration."""
    metrics = EvalMetrics()
    server = await serve(metrics, settings.metrics_port) if settings.metrics_port else None
    try:
        runner = SuiteRunner(spec, endpoints=settings.endpoints, output=settings.output, metrics=metrics, retry=retry)
        return await runner.run()
    finally:
        if server is not None:
            await server.cleanup()


def main(
    spec_path: str, output: str | None = None, env: Mapping[str, str] | None = None, retry: RetryPolicy | None = None
) -> int:
    """The whole command; `env` (default: the process environment) and `retry` are for tests."""
    environment = os.environ if env is None else env
    try:
        suite = load_spec(Path(spec_path))
        settings = settings_from(suite.spec, output, environment)
        summary = asyncio.run(evaluate(suite.spec, settings, retry))
    except (ConfigError, BenchmarkFileError) as exc:
        print(f"sailvl eval: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ServerUnavailable as exc:
        print(f"sailvl eval: {exc} (answers so far are kept; a rerun resumes)", file=sys.stderr)
        return EXIT_RETRY
    print(table(summary))
    termination = environment.get("SAILVL_TERMINATION_LOG")
    if termination:
        write_termination_message(summary, Path(termination))
    return EXIT_OK
