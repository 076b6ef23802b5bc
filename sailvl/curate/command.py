"""`sailvl curate`: a worker (`--worker I --workers N`) or the finalize step (`--finalize`), with the exit codes of
DESIGN §5: 0 done, 2 a bad spec or configuration (never retried), 1 anything that may succeed when retried."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping

from sailvl.api import CurationRun
from sailvl.curate.client import ServersUnavailable
from sailvl.curate.finalize import IncompleteRun, finalize
from sailvl.curate.metrics import CurateMetrics
from sailvl.curate.report import write_termination_message
from sailvl.curate.runner import InputUnreadable, Worker
from sailvl.curate.spec import SpecError, load_run, model_urls, worker_slot
from sailvl.data.sources import Source, open_source

EXIT_OK, EXIT_RETRYABLE, EXIT_INVALID = 0, 1, 2
METRICS_PORT_ENV = "SAILVL_METRICS_PORT"
log = logging.getLogger("sailvl.curate")


def _metrics(env: Mapping[str, str]) -> CurateMetrics:
    metrics = CurateMetrics()
    port = env.get(METRICS_PORT_ENV)
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SpecError(f"{METRICS_PORT_ENV} must be a TCP port number; found {port!r}")
        metrics.serve(int(port))
    return metrics


def _source(run: CurationRun) -> Source:
    try:
        return open_source(run.spec.input)
    except ValueError as e:
        raise SpecError(f"spec.input: {e}") from None


def run_command(
    spec: str, *, worker: int | None, workers: int | None, final: bool, env: Mapping[str, str] = os.environ
) -> int:
    identity: dict[str, object] = {}
    try:
        run = load_run(spec)
        if final:
            source = _source(run)
            report = finalize(run, source)
            message = report.message()
        else:
            index, count = worker_slot(worker, workers, run, env)
            identity = {"worker": index}
            urls = model_urls(run, env)
            source = _source(run)
            runner = Worker(run, index, count, urls=urls, metrics=_metrics(env))
            message = asyncio.run(runner.execute(source)).message()
    except SpecError as e:
        return _fail(EXIT_INVALID, str(e), identity, env)
    except (ServersUnavailable, IncompleteRun, InputUnreadable) as e:
        return _fail(EXIT_RETRYABLE, str(e), identity, env)
    print(json.dumps(message), flush=True)
    write_termination_message(message, env)
    return EXIT_OK


def _fail(code: int, error: str, identity: dict[str, object], env: Mapping[str, str]) -> int:
    print(f"sailvl curate: {error}", file=sys.stderr)
    write_termination_message({**identity, "error": error[:3000]}, env)
    return code
