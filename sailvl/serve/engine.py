"""The model behind the server: an exported checkpoint, prompts built by the training templates, greedy or
sampled generation. Greedy requests that wait together are generated as one left-padded batch (as vLLM batches
them): on a CPU a tiny model's decoding is bound by per-step overhead, so a batch of eight costs little more than
one request. A sampled request runs alone, so its `seed` gives the same answer whatever else is waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from sailvl.data.templates import Renderer, Sample
from sailvl.model.checkpoint import ModelLoadError, load_checkpoint


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_token_ids: list[int]
    token_ids: list[int]
    """The generated ids, the stop token included (as vLLM returns and counts them)."""
    first_token_at: float | None = field(default=None, compare=False)
    """`time.perf_counter()` when the first token was generated (vLLM's time to first token starts there)."""

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, str]]
    images: list[bytes]
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    max_tiles: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


class Engine:
    def __init__(
        self,
        folder: str | Path,
        *,
        max_model_len: int | None = None,
        max_tiles: int | None = None,
        dtype: str = "auto",
    ) -> None:
        """`dtype` (bfloat16, float16, float32, or auto: what the checkpoint's config.json declares) is the dtype
        the weights are served in, as vLLM's `--dtype`."""
        self.dtype = declared_dtype(Path(folder)) if dtype == "auto" else dtype
        built = load_checkpoint(Path(folder), max_tiles=max_tiles, dtype=getattr(torch, self.dtype))
        self.model = built.model
        self.model.train(False)  # inference: no dropout
        self.tokenizer = built.tokenizer
        self.tiler = built.tiler
        config_len = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 4096
        self.max_model_len = max_model_len or int(config_len)
        self._renderer = Renderer(
            tokenizer=self.tokenizer,
            template="chat",
            tiler=self.tiler,
            tokens_per_tile=built.tokens_per_tile,
            max_length=self.max_model_len,
        )
        # Where vLLM stops too: the generation config's end-of-sequence ids, and the tokenizer's own.
        stops = self.model.generation_config.eos_token_id
        stops = [*(stops if isinstance(stops, list) else [stops]), self.tokenizer.eos_token_id]
        self._stop_ids = list(dict.fromkeys(int(i) for i in stops if i is not None))
        self._lock = threading.Lock()

    def complete(
        self,
        messages: list[dict[str, str]],
        images: list[bytes],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        max_tiles: int | None = None,
    ) -> Completion:
        """Answer `messages`; raises ValueError for a prompt that cannot be built or does not fit."""
        request = GenerationRequest(messages, images, max_tokens, temperature, seed, max_tiles)
        (result,) = self.complete_batch([request])
        if isinstance(result, ValueError):
            raise result
        return result

    def complete_batch(self, requests: Sequence[GenerationRequest]) -> list[Completion | ValueError]:
        """Answer several requests with one generation: greedy ones only, or a single sampled one.

        Each result is the request's Completion, or the ValueError that refuses its prompt (the others still run).
        """
        if len(requests) > 1 and not all(r.greedy for r in requests):
            raise ValueError("only greedy requests are generated together; a sampled request runs alone")
        prompts: list[tuple[int, Sample, int]] = []  # (request index, prompt, new-token budget)
        refused: dict[int, ValueError] = {}
        for index, request in enumerate(requests):
            try:
                prompt, budget = self._prompt(request)
            except ValueError as err:
                refused[index] = err
                continue
            prompts.append((index, prompt, budget))
        answered: dict[int, Completion] = {}
        if prompts:
            first = FirstToken()
            outputs = self._generate(
                [p for _, p, _ in prompts], max(b for _, _, b in prompts), sampling=requests[0], streamer=first
            )
            for (index, prompt, budget), output in zip(prompts, outputs, strict=True):
                answered[index] = replace(
                    self._completion(output[:budget], prompt.input_ids.tolist()), first_token_at=first.at
                )
        return [answered[i] if i in answered else refused[i] for i in range(len(requests))]

    def _prompt(self, request: GenerationRequest) -> tuple[Sample, int]:
        renderer = self._renderer
        if request.max_tiles is not None and request.max_tiles != self.tiler.max_tiles:
            renderer = replace(renderer, tiler=replace(self.tiler, max_tiles=request.max_tiles))
        prompt = renderer.prompt(request.messages, request.images)
        budget = self.max_model_len - len(prompt)
        if budget < 1:
            raise ValueError(f"the prompt has {len(prompt)} tokens; the model's length is {self.max_model_len}")
        return prompt, min(request.max_tokens, budget)

    def _generate(
        self, prompts: list[Sample], new_tokens: int, *, sampling: GenerationRequest, streamer: Any = None
    ) -> list[list[int]]:
        """Generated token ids per prompt; prompts of different lengths are padded on the left. `sampling` gives
        the temperature and seed: those of the batch's only request, or greedy for all."""
        width = max(len(p) for p in prompts)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.from_numpy(prompt.input_ids)
            attention_mask[row, width - len(prompt) :] = 1
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "max_new_tokens": new_tokens,
            "eos_token_id": self._stop_ids,
            "pad_token_id": pad_id,
            "do_sample": not sampling.greedy,
            "streamer": streamer,
        }
        # The model fills its image-token positions in row order, so the rows' tiles go in the same order.
        tiles = [torch.from_numpy(p.pixel_values) for p in prompts if p.pixel_values is not None]
        if tiles:
            kwargs["pixel_values"] = torch.cat(tiles).to(self.model.dtype)
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_k=0, top_p=1.0)
        with self._lock, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self.model.generate(**kwargs)[:, width:]
        return [row.tolist() for row in output]

    def _completion(self, output: list[int], prompt_ids: list[int]) -> Completion:
        """A row of generated ids cut after its first stop token (rows that stopped early go on as padding); the
        text is the answer before it, decoded as vLLM decodes (special tokens skipped, nothing stripped)."""
        stop = next((i for i, token in enumerate(output) if token in self._stop_ids), None)
        answer = output if stop is None else output[:stop]
        return Completion(
            text=str(self.tokenizer.decode(answer, skip_special_tokens=True)),
            finish_reason="length" if stop is None else "stop",
            prompt_token_ids=prompt_ids,
            token_ids=output if stop is None else output[: stop + 1],
        )


class FirstToken(BaseStreamer):
    """Notes when generation produced its first token: transformers hands a streamer the prompt, then each new
    token (of every row of the batch at once)."""

    def __init__(self) -> None:
        self.calls = 0
        self.at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.at = time.perf_counter()

    def end(self) -> None:
        return None


def declared_dtype(folder: Path) -> str:
    """The dtype a checkpoint's config.json declares its weights in (float32 when it declares none)."""
    config = (
        json.loads((folder / "config.json").read_text(encoding="utf-8")) if (folder / "config.json").is_file() else {}
    )
    declared = config.get("dtype", config.get("torch_dtype")) or "float32"
    if declared not in ("bfloat16", "float16", "float32"):
        raise ModelLoadError(f"{folder}/config.json: dtype: expected bfloat16, float16 or float32; found {declared!r}")
    return str(declared)
