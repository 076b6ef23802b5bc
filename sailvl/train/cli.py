"""`sailvl train --spec FILE` (and `python -m sailvl.train --spec FILE`): run one TrainStage.

Exit codes (DESIGN §5): 0 done; 2 invalid spec or configuration (never retried); 3 loss not finite (never
retried); anything else a failure a gang restart may get past. Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

DESCRIPTION = (
    "Train one TrainStage: FILE is its manifest (YAML) or the resolved JSON the operator mounts. Runs alone or "
    "under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), on CPU with gloo or GPUs with nccl; "
    "resumes from the latest checkpoint under spec.checkpoint.uri. Environment: SAILVL_INIT_URI (the checkpoint a "
    "model.init.stage reference resolved to), SAILVL_PVC_ROOT, SAILVL_METRICS_PORT (default 9400, 'off' for "
    "none), SAILVL_TERMINATION_LOG. Exit status 2 for an invalid spec, 3 when the loss is not finite."
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="run one TrainStage (alone or under torchrun)", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, metavar="FILE", help="TrainStage manifest (YAML) or resolved JSON")
    parser.add_argument(
        "--pvc-root",
        metavar="DIR",
        default=None,
        help="folder with one subfolder per claim, for pvc:// URIs (default: $SAILVL_PVC_ROOT, else /mnt/pvc)",
    )


def run(args: argparse.Namespace) -> int:
    from sailvl.train.reporting import write_termination_message
    from sailvl.train.settings import (
        EXIT_INVALID,
        EXIT_LOSS_NOT_FINITE,
        EXIT_OK,
        LossNotFinite,
        SpecError,
        TrainerSettings,
        load_stage,
    )

    main_rank = os.environ.get("RANK", "0") == "0"
    _configure_logging(main_rank)
    log = logging.getLogger("sailvl.train")
    settings: TrainerSettings | None = None
    try:
        settings = TrainerSettings.from_env(os.environ, pvc_root=args.pvc_root)
        stage = load_stage(args.spec)
        from sailvl.train.trainer import train

        result = train(stage, settings)
    except SpecError as exc:
        log.error("%s", exc)
        _fail(settings, main_rank, str(exc))
        return EXIT_INVALID
    except LossNotFinite as exc:
        log.error("%s", exc)
        _fail(settings, main_rank, str(exc))
        return EXIT_LOSS_NOT_FINITE
    if main_rank:
        write_termination_message(settings.termination_log, result.termination_message())
    return EXIT_OK


def _fail(settings: Any, main_rank: bool, message: str) -> None:
    from sailvl.train.reporting import write_termination_message

    if settings is not None and main_rank:
        write_termination_message(settings.termination_log, {"error": message})


def _configure_logging(main_rank: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if main_rank else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sailvl.train", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
