"""Container images: lint-clean Dockerfiles, and an operator image with no ML framework in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.closure import closure, normalize
from tests.tools import tool

REPO = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))


def test_one_folder_per_image() -> None:
    assert [p.parent.name for p in DOCKERFILES] == ["operator", "sailvl"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_reports_nothing(dockerfile: Path) -> None:
    result = subprocess.run([str(tool("hadolint")), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_run_as_non_root(dockerfile: Path) -> None:
    users = re.findall(r"^USER (\S+)", dockerfile.read_text(), re.M)
    assert users and users[-1] not in ("root", "0")


def test_operator_extra_has_no_ml_framework() -> None:
    names = set(closure("sailvl", ("operator",)))
    assert {"kopf", "aiohttp", "prometheus-client", "pydantic"} <= names
    assert not names & {"torch", "transformers", "deepspeed", "vllm", "numpy", "tokenizers"}


def test_operator_image_lock_is_the_operator_closure() -> None:
    lock = (REPO / "images/operator/requirements.txt").read_text().splitlines()
    pinned = {normalize(line.split("==")[0]) for line in lock if line and not line.startswith("#")}
    assert all("==" in line for line in lock if line and not line.startswith("#"))
    assert pinned == set(closure("sailvl", ("operator",)))


def test_operator_image_copies_only_what_it_runs() -> None:
    copies = re.findall(r"^COPY (?!--from)(.+?) \S+$", (REPO / "images/operator/Dockerfile").read_text(), re.M)
    sources = " ".join(copies).split()
    assert "sailvl/" not in sources, "the operator image copies sailvl.api, not the whole core"
    assert "sailvl/api/" in sources and "operator/" in sources


def test_gpu_image_pins_what_vllm_requires() -> None:
    pins = dict(
        line.split("==")
        for line in (REPO / "images/sailvl/requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(pins) == {"torch", "vllm", "transformers", "deepspeed", "flash-attn"}
