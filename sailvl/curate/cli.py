"""`sailvl curate`: registered by `sailvl.cli`; imports nothing heavy until the command runs."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "curate",
        help="run a CurationRun's worker or its finalize step",
        description="A worker (--worker I --workers N) pushes its share of the input shards (every N-th, from the "
        "I-th) through the run's steps against the served models at SAILVL_MODEL_URL_<NAME>, writing one output "
        "shard per input shard; a rerun skips finished shards. --finalize then drops duplicates across all "
        "workers' output and writes the final part-NNNNN.parquet shards and _manifest.json. The summary goes to "
        "stdout and to the file SAILVL_TERMINATION_LOG names; SAILVL_METRICS_PORT serves Prometheus metrics. "
        "Exit status: 0 done, 2 bad spec or configuration, 1 a failure worth retrying.",
    )
    parser.add_argument("--spec", required=True, metavar="FILE", help="the CurationRun: a manifest (YAML) or JSON")
    parser.add_argument(
        "--worker", type=int, metavar="I", help="this worker's index (default: $JOB_COMPLETION_INDEX, else 0)"
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="number of workers (default: spec.workers.parallelism)"
    )
    parser.add_argument("--finalize", action="store_true", help="run the global dedup and write the final shards")
    parser.set_defaults(func=_curate)


def _curate(args: argparse.Namespace) -> int:
    from sailvl.curate.command import run_command

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(args.spec, worker=args.worker, workers=args.workers, final=args.finalize)
