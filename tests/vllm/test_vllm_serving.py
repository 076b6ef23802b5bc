"""A stage's export served by a real vLLM answers exactly as `sailvl serve` (and so as training) does: image
requests succeed, greedy answers are the same tokens, and `sailvl eval` and `sailvl curate` give the same scores and
captions through either server."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from transformers import AutoTokenizer

from sailvl.data.synthetic.generator import generate
from sailvl.data.synthetic.spec import SyntheticSpec
from sailvl.data.tokens import IMG_CONTEXT
from tests.vllm.conftest import MOST_TILES, SHAPES, Running, suite

pytestmark = pytest.mark.vllm


def _image_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _prompts() -> list[tuple[str, int]]:
    """24 (image URL, tiles) pairs: synthetic scenes at sizes and aspect ratios from square to 3:1 either way,
    asked with 1, 2 and 4 tiles (plus the thumbnail)."""
    sizes = [(96, 96), (224, 112), (112, 336), (300, 100), (160, 200), (240, 240), (90, 270), (350, 120)]
    out = []
    for i, (width, height) in enumerate(sizes * 3):
        spec = SyntheticSpec(n=64, seed=11, split="reference", min_side=min(width, height), max_side=max(width, height))
        record = generate(spec, i)
        with Image.open(io.BytesIO(record.images[0])) as image:
            out.append((_image_url(image.convert("RGB").resize((width, height))), (1, 2, MOST_TILES)[i % 3]))
    return out


def _body(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "model",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 32,
        "temperature": 0,
        "return_token_ids": True,
        **extra,
    }


def _image_request(url: str, tiles: int) -> dict[str, Any]:
    parts = [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "Describe this image in detail."},
    ]
    return _body(parts, mm_processor_kwargs={"max_patches": tiles})


def test_an_image_request_in_openai_list_content_succeeds(vllm: Running) -> None:
    # The export's old chat template wrote images as `<image>`: vLLM answered every such request with HTTP 500
    # "Failed to apply prompt replacement for mm_items['image'][0]".
    url, _ = _prompts()[0]
    status, body = vllm.chat(_image_request(url, 1))
    assert status == 200, body
    assert isinstance(body["choices"][0]["message"]["content"], str) and body["choices"][0]["token_ids"]


def test_greedy_answers_are_the_same_tokens_through_vllm_and_sailvl_serve(
    vllm: Running, stand_in: Running, export: Path
) -> None:
    context = AutoTokenizer.from_pretrained(export).convert_tokens_to_ids(IMG_CONTEXT)
    image_tokens, texts = set(), set()
    for url, tiles in _prompts():
        (a_status, a), (b_status, b) = vllm.chat(_image_request(url, tiles)), stand_in.chat(_image_request(url, tiles))
        assert (a_status, b_status) == (200, 200), (a, b)
        assert a["prompt_token_ids"] == b["prompt_token_ids"], f"{tiles} tiles: the prompts differ"
        assert a["choices"][0]["token_ids"] == b["choices"][0]["token_ids"], (a["choices"][0], b["choices"][0])
        assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
        counts = ("prompt_tokens", "completion_tokens", "total_tokens")
        assert [a["usage"][k] for k in counts] == [b["usage"][k] for k in counts]
        assert a["choices"][0]["finish_reason"] == b["choices"][0]["finish_reason"]
        image_tokens.add(a["prompt_token_ids"].count(context))
        texts.add(a["choices"][0]["message"]["content"])
    # The comparison means something: one tile (4 tokens of 56px) up to several tiles plus the thumbnail, and
    # captions that depend on the image.
    assert min(image_tokens) == 4 and max(image_tokens) >= 12, image_tokens
    assert len(texts) >= 4, texts


def test_a_text_only_string_request_is_the_same_tokens(vllm: Running, stand_in: Running) -> None:
    body = _body("Describe a picture of two red circles.")
    (_, a), (_, b) = vllm.chat(body), stand_in.chat(body)
    assert (
        a["prompt_token_ids"] == b["prompt_token_ids"] and a["choices"][0]["token_ids"] == b["choices"][0]["token_ids"]
    )


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_sailvl_eval_scores_the_same_through_either_server(
    vllm: Running, stand_in: Running, export: Path, tmp_path: Path
) -> None:
    resource = suite({"gpusPerReplica": 0}, overrides={"shapes_caption": {"limit": 8}, "shapes_count": {"maxTiles": 1}})
    results = {}
    for name, server in (("vllm", vllm), ("sailvl", stand_in)):
        doc = resource.to_manifest()
        doc["spec"]["model"] = {"uri": str(export)}
        doc["spec"]["output"] = {"uri": str(tmp_path / name)}
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(doc))
        termination = tmp_path / f"{name}.termination"
        env = {"SAILVL_MODEL_URL_MODEL": server.url, "SAILVL_TERMINATION_LOG": str(termination)}
        _run([sys.executable, "-m", "sailvl", "eval", "--spec", str(spec)], env)
        results[name] = json.loads(termination.read_text())
        predictions = {b: _predictions(tmp_path / name, b) for b in SHAPES}
        results[name]["predictions"] = predictions
        assert all(len(p) for p in predictions.values())
    assert results["vllm"]["results"] == results["sailvl"]["results"]
    assert results["vllm"]["average"] == results["sailvl"]["average"]
    assert results["vllm"]["predictions"] == results["sailvl"]["predictions"]


def _predictions(folder: Path, benchmark: str) -> dict[int, str]:
    lines = next(folder.rglob(f"{benchmark}.jsonl")).read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    assert not any("error" in row for row in rows), [row["error"] for row in rows if "error" in row]
    return {int(row["index"]): str(row["prediction"]) for row in rows}


def test_sailvl_curate_recaptions_the_same_through_either_server(
    vllm: Running, stand_in: Running, tmp_path: Path
) -> None:
    captions = {}
    for name, server in (("vllm", vllm), ("sailvl", stand_in)):
        output = tmp_path / name
        doc = {
            "apiVersion": "sailvl.io/v1alpha1",
            "kind": "CurationRun",
            "metadata": {"name": "recaption"},
            "spec": {
                "input": {"uri": "synthetic://shapes?n=24&seed=5&split=alt&size=96-200"},
                "output": {"uri": str(output), "samplesPerShard": 8},
                # Both servers serve the export as `model` (the EvalSuite rendering above).
                "models": [{"name": "model", "model": {"uri": "/unused"}}],
                "steps": [{"recaption": {"model": "model", "maxTokens": 48}}],
                "workers": {"parallelism": 2, "concurrency": 4},
            },
        }
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(doc))
        env = {"SAILVL_MODEL_URL_MODEL": server.url}
        for worker in ("0", "1"):
            _run(
                [sys.executable, "-m", "sailvl", "curate", "--spec", str(spec), "--worker", worker, "--workers", "2"],
                env,
            )
        _run([sys.executable, "-m", "sailvl", "curate", "--spec", str(spec), "--finalize"], env)
        rows = [row for part in sorted(output.glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]
        captions[name] = {row["id"]: row["text"] for row in rows}
        manifest = json.loads((output / "_manifest.json").read_text())
        assert manifest["counts"]["in"] == 24, manifest
    assert captions["vllm"] == captions["sailvl"]
    # Every record kept and recaptioned; a tiny captioner writes few distinct captions (two here), so the
    # token-for-token test above is what shows answers follow the image.
    assert len(captions["vllm"]) == 24 and len(set(captions["vllm"].values())) >= 2
