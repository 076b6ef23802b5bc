"""`sailvl check-export`: every rule refuses an export broken its way, naming the file and the field; every export the
trainer writes passes (tiny, trained; and a sail-vl-2b configuration built on the meta device)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sailvl.api.trainstage import ModelSpec
from sailvl.data import chat
from sailvl.model import checkpoint
from sailvl.model.build import build_model, build_preset
from sailvl.model.checkpoint import export_checkpoint, write_processing_files
from sailvl.model.export_check import ExportCheckError, assert_export, check_export
from sailvl.train.settings import SpecError
from tests.trainkit import run_here, tiny_stage

# The template exports had before the prompt layout was fixed: image parts as `<image>`, which vLLM's InternVL
# processor never finds (every image request failed with "Failed to apply prompt replacement").
OLD_TEMPLATE = chat.CHAT_TEMPLATE.replace("{{- '<IMG_CONTEXT>\\n' -}}", "{{- '<image>\\n' -}}").replace(
    " | replace('<image>', '<IMG_CONTEXT>')", ""
)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_preset("tiny", seed=0, tile_size=56, max_tiles=2)
    return export_checkpoint(built, tmp_path_factory.mktemp("export") / "final")


def _edit_json(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return edit


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value

    return change


_DELETE = object()


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


# (rule, how the export is broken, the file and field the problem must name)
BROKEN: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("files", _remove("preprocessor_config.json"), "preprocessor_config.json", "-"),
    ("files", _remove("model.safetensors"), "model.safetensors", "-"),
    (
        "architecture",
        _edit_json("config.json", _set("architectures", ["LlavaForConditionalGeneration"])),
        "config.json",
        "architectures",
    ),
    (
        "architecture",
        _edit_json("config.json", _set("vision_config.model_type", "siglip_vision_model")),
        "config.json",
        "vision_config.model_type",
    ),
    ("dtype", _edit_json("config.json", _set("dtype", _DELETE)), "config.json", "dtype"),
    ("dtype", _edit_json("config.json", _set("dtype", "bfloat16")), "model.safetensors", "weights"),
    ("image-tokens", _edit_json("config.json", _set("image_token_id", 5)), "config.json", "image_token_id"),
    (
        "image-tokens",
        _edit_json("tokenizer_config.json", _set("context_image_token", _DELETE)),
        "tokenizer_config.json",
        "context_image_token",
    ),
    (
        "image-seq-length",
        _edit_json("processor_config.json", _set("image_seq_length", 16)),
        "processor_config.json",
        "image_seq_length",
    ),
    ("image-seq-length", _edit_json("config.json", _set("downsample_ratio", 1.0)), "config.json", "image_seq_length"),
    (
        "image-processor",
        _edit_json("preprocessor_config.json", _set("size", {"height": 448, "width": 448})),
        "preprocessor_config.json",
        "size",
    ),
    (
        "image-processor",
        _edit_json("preprocessor_config.json", _set("crop_to_patches", False)),
        "preprocessor_config.json",
        "crop_to_patches",
    ),
    (
        "processor",
        _edit_json("processor_config.json", _set("processor_class", "LlavaProcessor")),
        "processor_config.json",
        "processor_class",
    ),
    ("chat-template", _write("chat_template.jinja", OLD_TEMPLATE), "chat_template.jinja", "chat_template"),
    (
        "chat-template",
        _write("chat_template.jinja", "{{ messages[0]['content'] }}"),
        "chat_template.jinja",
        "chat_template",
    ),
    (
        "vocabulary",
        _edit_json("config.json", _set("text_config.vocab_size", 10)),
        "config.json",
        "text_config.vocab_size",
    ),
    (
        "generation",
        _edit_json("generation_config.json", _set("eos_token_id", 5)),
        "generation_config.json",
        "eos_token_id",
    ),
    (
        "generation",
        _edit_json("generation_config.json", _set("pad_token_id", 5)),
        "generation_config.json",
        "pad_token_id",
    ),
]


def test_a_good_export_passes(good: Path) -> None:
    assert check_export(good) == []


@pytest.mark.parametrize(("rule", "breaks", "file", "field"), BROKEN, ids=[f"{r}:{f}:{g}" for r, _, f, g in BROKEN])
def test_each_rule_refuses_its_broken_export(
    good: Path, tmp_path: Path, rule: str, breaks: Callable[[Path], None], file: str, field: str
) -> None:
    folder = tmp_path / "final"
    shutil.copytree(good, folder)
    breaks(folder)
    problems = check_export(folder)
    assert problems, f"{rule}: the broken export passed"
    assert {p.rule for p in problems} == {rule}, problems
    assert any(p.file == file and p.field == field for p in problems), problems
    with pytest.raises(ExportCheckError, match=rf"{file}: {field}: .*\[{rule}\]"):
        assert_export(folder)


def test_the_trainer_checks_every_export_it_writes(tmp_path: Path) -> None:
    result = run_here(tiny_stage(tmp_path / "ckpt"))
    assert check_export(result.checkpoint) == []
    config = json.loads((Path(result.checkpoint) / "config.json").read_text())
    assert config["dtype"] == "float32"  # the stage's precision (fp32)


def test_a_bf16_stage_exports_bfloat16_weights_even_on_a_cpu(tmp_path: Path) -> None:
    result = run_here(tiny_stage(tmp_path / "ckpt", precision="bf16"))
    assert json.loads((Path(result.checkpoint) / "config.json").read_text())["dtype"] == "bfloat16"
    assert check_export(result.checkpoint) == []  # the tensors are stored as bfloat16 too


def test_a_broken_export_fails_the_stage_and_leaves_no_final(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = checkpoint.write_processing_files

    def broken(built: Any, folder: Path, **kwargs: Any) -> None:
        real(built, folder, **kwargs)
        (folder / "chat_template.jinja").write_text(OLD_TEMPLATE)

    monkeypatch.setattr(checkpoint, "write_processing_files", broken)
    with pytest.raises(SpecError, match=r"chat_template.jinja: chat_template: string and OpenAI list content"):
        run_here(tiny_stage(tmp_path / "ckpt"))
    assert not (tmp_path / "ckpt" / "final").exists()
    assert not list((tmp_path / "ckpt").glob(".final*"))


def test_a_sail_vl_2b_configuration_passes(tmp_path: Path) -> None:
    built = build_model(ModelSpec(preset="sail-vl-2b"), device="meta")
    # What save_pretrained records beside the weights of a bf16 stage's export (meta tensors cannot be written).
    built.model.config.dtype = torch.bfloat16
    built.model.config.architectures = [type(built.model).__name__]
    built.model.config.save_pretrained(tmp_path)
    built.model.generation_config.save_pretrained(tmp_path)
    write_processing_files(built, tmp_path)
    assert check_export(tmp_path, weights=False) == []
    assert json.loads((tmp_path / "processor_config.json").read_text())["image_seq_length"] == 256


def test_the_cli_names_file_and_field(good: Path, tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "sailvl", "check-export"]
    ok = subprocess.run([*exe, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{good}: ok"
    broken = tmp_path / "final"
    shutil.copytree(good, broken)
    (broken / "chat_template.jinja").write_text(OLD_TEMPLATE)
    _edit_json("config.json", _set("image_token_id", 5))(broken)
    out = subprocess.run([*exe, str(broken), str(tmp_path / "nowhere")], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert f"{broken}/config.json: image_token_id: expected the tokenizer's id of <IMG_CONTEXT>" in out.stderr
    assert f"{broken}/chat_template.jinja: chat_template:" in out.stderr
    assert f"{tmp_path / 'nowhere'}: not a folder" in out.stderr
