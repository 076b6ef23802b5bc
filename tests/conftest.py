from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = REPO / "charts" / "sailvl" / "crds"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def committed_crds() -> dict[str, dict[str, Any]]:
    """Kind to the CRD committed under charts/sailvl/crds."""
    crds = {}
    for path in sorted(CRD_DIR.glob("sailvl.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


@pytest.fixture(scope="session")
def third_party_schemas() -> Path:
    """The published CRD schemas of other projects (PyTorchJob, TrainJob, ServiceMonitor ...)."""
    folder = os.environ.get("SAILVL_THIRD_PARTY_SCHEMAS")
    if not folder:
        pytest.skip("SAILVL_THIRD_PARTY_SCHEMAS is not set (CI sets it to ../shared/schemas)")
    return Path(folder)
