"""`sailvl validate` and `sailvl crds` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sailvl.cli import main
from tests.manifests import CURATION, EVAL, TRAIN, mutated


def _write(path: Path, *docs: object) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_three_broken_documents_are_all_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _write(
        tmp_path / "recipe.yaml",
        mutated(TRAIN, {"spec.optimizer.lr": -1.0}),
        CURATION,
        mutated(CURATION, {"metadata.name": "second", "spec.steps[0].recaption.model": "nobody"}),
        mutated(EVAL, {"spec.benchmarks[0]": "NotABenchmark"}),
    )
    assert main(["validate", str(manifest)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{manifest} [doc 0] TrainStage/align: spec.optimizer.lr: Input should be greater than 0; found -1" in err
    assert any(
        line.startswith(f"{manifest} [doc 2] CurationRun/second: spec.steps[0].recaption.model: ") for line in err
    )
    assert any(
        line.startswith(f"{manifest} [doc 3] EvalSuite/align-eval: spec.benchmarks[0]: unknown benchmark")
        for line in err
    )
    assert err[-1] == "3 errors in 3 of 4 documents (1 file)"


def test_valid_folder_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "a.yaml", TRAIN)
    _write(tmp_path / "sub" / "b.yml", CURATION, EVAL)
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "3 documents valid in 2 files (CurationRun 1, EvalSuite 1, TrainStage 1)"


def test_unreadable_inputs_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    assert main(["validate", str(tmp_path / "broken.yaml"), str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml [doc 0] ?/?: not valid YAML" in err
    assert "missing.yaml [doc 0] ?/?: no such file or folder" in err


def test_empty_input_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 1
    assert "no documents found" in capsys.readouterr().err


def test_duplicates_and_cycles_among_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = mutated(TRAIN, {"metadata.name": "a", "spec.model": {"init": {"stage": "b"}}})
    second = mutated(TRAIN, {"metadata.name": "b", "spec.model": {"init": {"stage": "a"}}})
    _write(tmp_path / "x.yaml", first, second, first)
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "TrainStage/a: metadata.name: TrainStage/a is defined more than once" in err
    assert (
        "spec.model.init.stage: refers to TrainStage/b, which waits for this one: "
        "TrainStage/a -> TrainStage/b -> TrainStage/a" in err
    )


def test_a_resource_that_refers_to_itself_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    itself = mutated(CURATION, {"spec.input": {"curationRun": CURATION["metadata"]["name"]}})
    _write(tmp_path / "x.yaml", itself)
    assert main(["validate", str(tmp_path)]) == 1
    assert "spec.input.curationRun: refers to this CurationRun itself" in capsys.readouterr().err


def test_reference_to_a_resource_not_at_hand_is_fine(tmp_path: Path) -> None:
    _write(tmp_path / "x.yaml", mutated(TRAIN, {"spec.model": {"init": {"stage": "in-the-cluster"}}}))
    assert main(["validate", str(tmp_path)]) == 0


def test_kubectl_list_documents_are_expanded(tmp_path: Path) -> None:
    _write(tmp_path / "list.yaml", {"apiVersion": "v1", "kind": "List", "items": [TRAIN, EVAL]})
    assert main(["validate", str(tmp_path)]) == 0


def test_yaml_numbers_read_as_kubectl_reads_them(tmp_path: Path) -> None:
    text = yaml.safe_dump(TRAIN, sort_keys=False).replace("lr: 0.001", "lr: 1e-3")
    assert "lr: 1e-3" in text
    (tmp_path / "x.yaml").write_text(text)
    assert main(["validate", str(tmp_path)]) == 0


def test_console_script_runs_validate_and_crds(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("sailvl")
    _write(tmp_path / "x.yaml", mutated(TRAIN, {"spec.budget": {}}))
    bad = subprocess.run([str(exe), "validate", str(tmp_path)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "spec.budget: exactly one of tokens, samples, steps, epochs must be set; found none" in bad.stderr
    out = tmp_path / "crds"
    subprocess.run([str(exe), "crds", "--output", str(out)], check=True, capture_output=True)
    assert subprocess.run([str(exe), "crds", "--check", "--output", str(out)], check=False).returncode == 0
    (out / "sailvl.io_trainstages.yaml").write_text("edited by hand")
    check = subprocess.run(
        [str(exe), "crds", "--check", "--output", str(out)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 1
    assert "sailvl.io_trainstages.yaml: differs from the generated CRD" in check.stderr
