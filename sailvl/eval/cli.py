"""`sailvl eval --spec FILE [--output DIR]`: registered by `sailvl.cli`; imports nothing heavy until it runs."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "eval",
        help="score a served model on an EvalSuite's benchmarks",
        description="Ask the model at $SAILVL_MODEL_URL_MODEL (and a judge at $SAILVL_MODEL_URL_JUDGE) every item of "
        "the suite's benchmarks, score them VLMEvalKit-style, print the scores and group averages and write "
        "results.json. Reruns ask only the items not yet answered. Exit status 2 on an invalid spec.",
    )
    parser.add_argument("--spec", required=True, metavar="FILE", help="EvalSuite manifest (YAML) or resolved JSON")
    parser.add_argument(
        "--output", metavar="DIR", help="folder for predictions and results.json (default: the spec's output.uri)"
    )
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from sailvl.eval.command import main

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return main(args.spec, args.output)
