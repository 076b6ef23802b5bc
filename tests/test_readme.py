"""The README's two commands stay true: CI runs exactly its test command, and its quickstart works."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "the README opens with a sh block of two commands"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands() -> None:
    setup, tests = _readme_commands()
    assert "pip install torch==2.13.0" in setup and setup.index("torch==2.13.0") < setup.index("pip install -e")
    assert ".venv/bin/sailvl run examples/quickstart" in setup and "sailvl report" in setup
    assert tests == ".venv/bin/python -m pytest"


def test_ci_runs_exactly_the_readme_test_command_last() -> None:
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == _readme_commands()[1]
    assert any("pip install -q torch==2.13.0" in line for line in ci)
