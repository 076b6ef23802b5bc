"""Every manifest under examples/ is valid for the models and for the CRDs, as a cluster would check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sailvl.api import load_documents
from sailvl.api.validation import validate_paths
from tests.crdcheck import server_errors

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOCUMENTS = load_documents([EXAMPLES])


def test_there_are_examples() -> None:
    assert {d.raw["kind"] for d in DOCUMENTS if isinstance(d.raw, dict)} == {"TrainStage", "CurationRun", "EvalSuite"}


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[f"{Path(d.source).relative_to(EXAMPLES)}#{d.index}" for d in DOCUMENTS])
def test_example_is_valid_for_the_models(doc: Any) -> None:
    assert doc.issues == []


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[f"{Path(d.source).relative_to(EXAMPLES)}#{d.index}" for d in DOCUMENTS])
def test_example_is_valid_for_the_crd(doc: Any, committed_crds: dict[str, dict[str, Any]]) -> None:
    assert server_errors(committed_crds[doc.raw["kind"]], doc.raw) == []


@pytest.mark.parametrize("folder", sorted(p for p in EXAMPLES.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_each_example_folder_is_a_consistent_recipe(folder: Path) -> None:
    result = validate_paths([folder])
    assert result.ok, [str(i) for d in result.failed for i in d.issues]
