"""The light layers stay light: the API, the CLI's validation and the operator package never load torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

ML = ("torch", "transformers", "deepspeed")
CLUSTER = ("kopf", "kubernetes")


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        ("sailvl", ML + CLUSTER),
        ("sailvl.api", ML + CLUSTER),
        ("sailvl.api.crd, sailvl.api.validation, sailvl.cli", ML + CLUSTER),
        ("sailvl_operator", ML),
    ],
)
def test_import_does_not_load_torch(modules: str, heavy: tuple[str, ...]) -> None:
    code = f"import sys, {modules}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_torch_is_installed_so_the_check_means_something() -> None:
    code = "import importlib.util; print(importlib.util.find_spec('torch') is not None)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )
