"""`sailvl serve --model PATH`: serve an exported checkpoint over the OpenAI API (the CPU stand-in for vLLM)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sailvl.serve import DEFAULT_MAX_NUM_SEQS


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve a checkpoint over the OpenAI API on CPU (the local stand-in for vLLM)",
        description="Serve an exported InternVL checkpoint: /v1/chat/completions (text and image_url data URIs), "
        "/v1/models, /health and /metrics.",
    )
    parser.add_argument("--model", required=True, help="folder of an exported checkpoint (a stage's final/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--served-model-name", help="name requests use (default: the folder's name)")
    parser.add_argument("--max-model-len", type=int, help="longest prompt plus answer in tokens")
    parser.add_argument(
        "--max-tiles", type=int, help="tiles per image unless a request sets mm_processor_kwargs.max_patches"
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float16", "float32"),
        default="auto",
        help="dtype the weights are served in, as vLLM's option; auto: what the checkpoint's config.json declares "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-num-seqs",
        type=int,
        default=DEFAULT_MAX_NUM_SEQS,
        help="greedy requests generated together at most, as vLLM's option (default: %(default)s)",
    )
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from sailvl.model.checkpoint import ModelLoadError
    from sailvl.serve.app import build_app
    from sailvl.serve.engine import Engine

    if args.max_num_seqs < 1:
        print(f"sailvl serve: --max-num-seqs: expected at least 1; found {args.max_num_seqs}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    folder = Path(args.model)
    try:
        engine = Engine(folder, max_model_len=args.max_model_len, max_tiles=args.max_tiles, dtype=args.dtype)
    except (ModelLoadError, OSError) as err:
        print(f"sailvl serve: cannot load --model {folder}: {err}", file=sys.stderr)
        return 2
    name = args.served_model_name or folder.name
    app = build_app(engine, name, max_num_seqs=args.max_num_seqs)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0
