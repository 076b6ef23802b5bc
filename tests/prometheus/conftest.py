"""The `prometheus` tier: the chart's monitoring against a real Prometheus and promtool (Debian's `prometheus`
package, which `.ci/run` installs). Without them the tier is skipped, except under CI, where that is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_values import CHART
from tests.operator.conftest import emulator, kube, kubeconfig, operator_factory  # noqa: F401 (fixtures)
from tests.tools import tool

NAMESPACE = "sailvl-system"  # where the chart is installed
# The chart with its monitors and alerts on, at its default thresholds.
MONITORING = ["--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"]
MONITORING += ["--set", "prometheusRule.enabled=true"]


def _binary(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        message = f"no {name}: install Debian's prometheus package (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus() -> Path:
    return _binary("prometheus")


def render_chart(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(tool("helm")), "template", "sailvl", str(CHART), "--namespace", NAMESPACE, *MONITORING, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    return found


def write_rules(objects: list[dict[str, Any]], folder: Path) -> Path:
    """The rendered PrometheusRule's groups as the rule file Prometheus and promtool read."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": one(objects, "PrometheusRule")["spec"]["groups"]}, sort_keys=False))
    return path
