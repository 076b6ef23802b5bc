"""Run by the vLLM environment's Python: parse `vllm serve ...` argvs with vLLM's own parser and engine arguments.

Reads a JSON list of argvs on stdin; writes a JSON list with, per argv, null (vLLM accepts it) or what vLLM said.
Each argv goes through what `vllm serve` does before it loads a model: the `serve` subcommand's parser, its
validation, and `AsyncEngineArgs.from_cli_args`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.utils.argparse_utils import FlexibleArgumentParser


def check(argv: list[str]) -> str | None:
    if argv[:2] != ["vllm", "serve"]:
        return f"expected an argv starting with vllm serve; found {argv[:2]}"
    parser = FlexibleArgumentParser(prog="vllm")
    subparsers = parser.add_subparsers(dest="subparser")
    command = ServeSubcommand()
    command.subparser_init(subparsers)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args: argparse.Namespace = parser.parse_args(argv[1:])
        command.validate(args)
        if getattr(args, "model_tag", None) is not None:
            args.model = args.model_tag
        AsyncEngineArgs.from_cli_args(args)
    except SystemExit:
        return errors.getvalue().strip().splitlines()[-1] if errors.getvalue().strip() else "argparse exited"
    except Exception as err:  # whatever vLLM raises is the answer
        return f"{type(err).__name__}: {err}"
    return None


def main() -> None:
    argvs = json.load(sys.stdin)
    json.dump([check(argv) for argv in argvs], sys.stdout)


if __name__ == "__main__":
    main()
