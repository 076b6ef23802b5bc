"""The tiny byte-level BPE tokenizer: built identically every time, fast, with ChatML and image special tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from sailvl.data.synthetic import generate, parse_synthetic_uri
from sailvl.data.tokenizer import SPECIAL_TOKENS, VOCAB_SIZE, build_tiny_tokenizer, learn_merges
from sailvl.data.tokens import END_OF_TEXT, IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START

_BUILD = """
import hashlib, pathlib, sys, time
t = time.perf_counter()
from sailvl.data.tokenizer import build_tiny_tokenizer
t = time.perf_counter()
tok = build_tiny_tokenizer()
elapsed = time.perf_counter() - t
tok.save_pretrained(sys.argv[1])
files = sorted(pathlib.Path(sys.argv[1]).iterdir())
print(elapsed, hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest())
"""


def test_two_builds_serialize_identically_and_fast(tmp_path: Path) -> None:
    results = []
    for hash_seed in ("0", "12345"):  # Python's and Rust's hash orders differ between these processes
        out = subprocess.run(
            [sys.executable, "-c", _BUILD, str(tmp_path / hash_seed)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout.split()
        results.append((float(out[0]), out[1]))
    assert results[0][1] == results[1][1]
    assert max(seconds for seconds, _ in results) < 1.0
    # And in this process: a second build is a fresh object with the same serialization.
    a, b = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert a is not b
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_special_tokens_are_single_ids_after_the_bytes_and_merges() -> None:
    tok = build_tiny_tokenizer()
    assert len(tok) == VOCAB_SIZE
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(tok) - len(SPECIAL_TOKENS), len(tok)))
    text = f"{IMG_START}{IMG_CONTEXT * 3}{IMG_END}{IM_START}user\nhi{IM_END}{END_OF_TEXT}"
    expected_ids = [ids[3], ids[5], ids[5], ids[5], ids[4], ids[1]]
    assert tok(text)["input_ids"][:6] == expected_ids
    assert tok.pad_token == END_OF_TEXT and tok.eos_token == IM_END
    assert tok.pad_token_id == ids[0] and tok.eos_token_id == ids[2]
    assert (tok.start_image_token, tok.end_image_token, tok.context_image_token) == (IMG_START, IMG_END, IMG_CONTEXT)
    assert tok.context_image_token_id == ids[5]


@pytest.mark.parametrize("text", ["héllo wörld 世界 🙂\t\n", "There are two red circles.", "  spaces  ", "<image>\n"])
def test_any_text_round_trips(text: str) -> None:
    tok = build_tiny_tokenizer()
    assert tok.decode(tok(text)["input_ids"]) == text


def test_bpe_compresses_the_synthetic_text() -> None:
    tok = build_tiny_tokenizer()
    spec = parse_synthetic_uri("synthetic://shapes?n=50&seed=99&split=reference")
    captions = [generate(spec, i).text or "" for i in range(50)]
    tokens = sum(len(tok(c)["input_ids"]) for c in captions)
    assert tokens < sum(len(c.encode()) for c in captions) / 4
    assert tok.tokenize(" circle") == ["Ġcircle"]


def test_chat_template_writes_chatml() -> None:
    tok = build_tiny_tokenizer()
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "<image>\nWhat shape is this?"},
        {"role": "assistant", "content": "A circle."},
    ]
    assert tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<IMG_CONTEXT>\nWhat shape is this?<|im_end|>\n"
        "<|im_start|>assistant\nA circle.<|im_end|>\n"
    )
    # An OpenAI image part (as vLLM hands it to the template) renders exactly as the record's placeholder does.
    parts: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count."}]}]
    prompt = tok.apply_chat_template(parts, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<IMG_CONTEXT>\nCount.<|im_end|>\n<|im_start|>assistant\n"
    string = [{"role": "user", "content": "<image>\nCount."}]
    assert tok.apply_chat_template(string, tokenize=False, add_generation_prompt=True) == prompt


def test_save_and_reload_with_transformers(tmp_path: Path) -> None:
    tok = build_tiny_tokenizer()
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = f"{IM_START}user\n{IMG_START}{IMG_CONTEXT}{IMG_END} two blue stars{IM_END}"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.chat_template == tok.chat_template and again.pad_token_id == tok.pad_token_id
    assert again.context_image_token_id == tok.context_image_token_id


def test_learn_merges_breaks_ties_by_order_not_by_hash() -> None:
    # ab and cd tie at 3: the smaller pair goes first; abcd's (ab, cd) occurs once, below min_count=2.
    assert learn_merges(Counter({"ab": 2, "cd": 2, "abcd": 1}), 10, min_count=2) == [("a", "b"), ("c", "d")]
    assert learn_merges(Counter({"ab": 2, "cd": 2, "abcd": 1}), 10) == [("a", "b"), ("c", "d"), ("ab", "cd")]
    assert learn_merges(Counter({"zz": 3, "yy": 3}), 1) == [("y", "y")]
    assert learn_merges(Counter({"xyz": 5, "xy": 4, "yz": 4}), 5) == [("x", "y"), ("xy", "z"), ("y", "z")]


def _naive_merges(words: Counter[str], max_merges: int) -> list[tuple[str, str]]:
    """Textbook BPE: recount every pair after every merge."""
    symbols = {w: list(w) for w in words}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        counts: Counter[tuple[str, str]] = Counter()
        for w, seq in symbols.items():
            for pair in pairwise(seq):
                counts[pair] += words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for w, seq in symbols.items():
            out, i = [], 0
            while i < len(seq):
                if seq[i : i + 2] == list(best):
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            symbols[w] = out
    return merges


def test_incremental_merges_equal_textbook_bpe() -> None:
    spec = parse_synthetic_uri("synthetic://shapes?n=40&seed=3&split=text")
    words = Counter(w for i in range(40) for w in (generate(spec, i).text or "").split())
    assert learn_merges(words, 300) == _naive_merges(words, 300)
