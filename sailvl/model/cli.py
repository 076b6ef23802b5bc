"""`sailvl check-export DIR`: lint an exported checkpoint against what transformers and vLLM need (CPU only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "check-export",
        help="check that a checkpoint folder is one transformers and vLLM serve as it was trained",
        description="Check an exported InternVL checkpoint (a stage's final/): files, architecture, declared dtype, "
        "image token ids across config, tokenizer and processor files, tokens per tile, the tiling config, and the "
        "chat template (string and OpenAI list content must give the same prompt). Reads configs and tensor "
        "headers only; no GPU, no weights loaded. Exit status 1 on any problem.",
    )
    parser.add_argument("folders", nargs="+", metavar="DIR", help="checkpoint folders")
    parser.add_argument(
        "--skip-weights", action="store_true", help="check the configuration files only (weights not yet copied)"
    )
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from sailvl.model.export_check import check_export

    failed = 0
    for folder in args.folders:
        if not Path(folder).is_dir():
            print(f"{folder}: not a folder", file=sys.stderr)
            failed += 1
            continue
        problems = check_export(folder, weights=not args.skip_weights)
        for problem in problems:
            print(f"{folder}/{problem}", file=sys.stderr)
        if problems:
            failed += 1
        else:
            print(f"{folder}: ok")
    return 1 if failed else 0
