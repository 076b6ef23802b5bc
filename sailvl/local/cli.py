"""`sailvl run`, `sailvl status` and `sailvl report`: the local runner's commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_WORKDIR = ".sailvl"


def register(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run manifests on this machine (the local runner)",
        description="Validate the manifests, order them by their references and run each resource as processes "
        "(torchrun for stages, sailvl serve + curate for curation, sailvl serve + eval for evaluation). "
        "Running it again resumes: Succeeded resources are skipped, interrupted ones resume.",
    )
    run.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or folders")
    run.add_argument("--workdir", default=DEFAULT_WORKDIR, help="status, logs and outputs (default: %(default)s)")
    run.add_argument("--pvc-root", help="folder that pvc://<claim>/<path> maps into (default: WORKDIR/pvc)")
    run.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every TrainStage budget and the record count of synthetic:// curation and evaluation "
        "inputs: a smoke test of a recipe without editing it (default: 1)",
    )
    run.add_argument("--jobs", type=int, default=2, help="resources run side by side at most (default: %(default)s)")
    run.add_argument(
        "--serving",
        choices=("sailvl", "vllm"),
        default="sailvl",
        help="what serves the models of CurationRuns and EvalSuites: `sailvl serve` (default) or a real vLLM "
        "found with --vllm, $SAILVL_VLLM or on PATH",
    )
    run.add_argument("--vllm", metavar="PATH", help="the `vllm` executable for --serving vllm")
    run.set_defaults(func=_run)

    status = sub.add_parser("status", help="the resources of a local run, as kubectl get shows them")
    status.add_argument("--workdir", default=DEFAULT_WORKDIR, help="the run's folder (default: %(default)s)")
    status.set_defaults(func=_status)

    report = sub.add_parser("report", help="plots and tables of a local run, and the numbers behind its claims")
    report.add_argument("--workdir", default=DEFAULT_WORKDIR, help="the run's folder (default: %(default)s)")
    report.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    import sys

    from sailvl.local.backends import Backend, ServingError
    from sailvl.local.runner import run

    try:
        backend = Backend.find(args.serving, args.vllm)
    except ServingError as err:
        print(f"sailvl run: {err}", file=sys.stderr)
        return 2
    pvc_root = Path(args.pvc_root) if args.pvc_root else None
    return run(
        args.paths, workdir=Path(args.workdir), pvc_root=pvc_root, scale=args.scale, jobs=args.jobs, backend=backend
    )


def _status(args: argparse.Namespace) -> int:
    from sailvl.local.status import status_table

    print(status_table(Path(args.workdir)))
    return 0


def _report(args: argparse.Namespace) -> int:
    import sys

    from sailvl.local.report import ReportError, write_report

    try:
        page = write_report(Path(args.workdir))
    except ReportError as err:
        print(f"sailvl report: {err}", file=sys.stderr)
        return 1
    print(f"report: {page}")
    return 0
