"""`sailvl ...`: the command line. Each subcommand imports only what it needs, so `sailvl validate`
starts fast and never loads torch.

Subcommands of other layers live beside their code: each module named in `COMMAND_MODULES` has a
`register(subparsers)` that adds its parsers and imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from sailvl import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "sailvl.model.cli",
    "sailvl.train.cli",
    "sailvl.serve.cli",
    "sailvl.curate.cli",
    "sailvl.local.cli",
    "sailvl.eval.cli",
)


def _validate(args: argparse.Namespace) -> int:
    from sailvl.api.validation import report, validate_paths

    result = validate_paths(args.paths)
    print(report(result), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _crds(args: argparse.Namespace) -> int:
    from sailvl.api.crd import render_crds, stale_crds, write_crds

    if args.stdout:
        sys.stdout.write("---\n".join(render_crds().values()))
        return 0
    directory = Path(args.output)
    if args.check:
        stale = stale_crds(directory)
        for name in stale:
            print(f"{directory / name}: differs from the generated CRD; run `sailvl crds`", file=sys.stderr)
        return 1 if stale else 0
    changed = write_crds(directory)
    print(f"{len(changed)} of 3 CRDs written to {directory}" if changed else f"CRDs in {directory} are up to date")
    return 0


def _render(args: argparse.Namespace) -> int:
    import os

    import yaml

    from sailvl.api.validation import report
    from sailvl_operator.builders.render import render_paths
    from sailvl_operator.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"sailvl render: {exc}", file=sys.stderr)
        return 2
    rendered = render_paths(args.paths, settings)
    if rendered.validation is not None and not rendered.validation.ok:
        print(report(rendered.validation), file=sys.stderr)
        return 1
    for note in rendered.notes:
        print(f"# {note}", file=sys.stderr)
    for error in rendered.errors:
        print(error, file=sys.stderr)
    sys.stdout.write(yaml.safe_dump_all(rendered.objects, sort_keys=False))
    return 1 if rendered.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sailvl", description="The SAIL-VL recipe as Kubernetes-native software.")
    parser.add_argument("--version", action="version", version=f"sailvl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser(
        "validate",
        help="check manifests against the sailvl.io/v1alpha1 API",
        description="Validate TrainStage, CurationRun and EvalSuite manifests: every error in every document, "
        "with its field path. Exit status 1 on any error.",
    )
    validate.add_argument("paths", nargs="+", metavar="FILE|DIR", help="YAML/JSON files or folders of them")
    validate.set_defaults(func=_validate)

    crds = sub.add_parser(
        "crds",
        help="generate the CustomResourceDefinitions from the API models",
        description="Write the CRDs generated from sailvl.api (atomically; unchanged files are left alone).",
    )
    crds.add_argument("--output", "-o", default="charts/sailvl/crds", help="folder (default: %(default)s)")
    crds.add_argument("--check", action="store_true", help="write nothing; exit 1 if the folder's CRDs are stale")
    crds.add_argument("--stdout", action="store_true", help="print the CRDs as one YAML stream instead")
    crds.set_defaults(func=_crds)

    render = sub.add_parser(
        "render",
        help="print the objects the operator would create for the resources in the files",
        description="Print (YAML) every child the operator creates over the life of the resources in the files: a "
        "TrainStage's resolved spec ConfigMap and first-attempt PyTorchJob or TrainJob; a CurationRun's spec "
        "ConfigMap, vLLM Deployment and Service per model, workers and finalize Jobs; an EvalSuite's spec ConfigMap, "
        "vLLM Deployments and Services and eval Job. A reference to a stage or run in the files is shown as the URI "
        "it will have; one outside them as a placeholder. Operator settings come from the same SAILVL_* environment "
        "variables as the operator's. Exit status 1 on any error.",
    )
    render.add_argument("paths", nargs="+", metavar="FILE|DIR", help="YAML/JSON files or folders of them")
    render.set_defaults(func=_render)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
