"""The model behind the server: an exported checkpoint, prompts built by the training templates, greedy or
sampled generation. One generation runs at a time (a CPU model is compute bound); waiting requests queue."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from sailvl.data.templates import Renderer
from sailvl.data.tokens import END_OF_TEXT, IM_END
from sailvl.model.checkpoint import load_checkpoint


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


class Engine:
    def __init__(self, folder: str | Path, *, max_model_len: int | None = None, max_tiles: int | None = None) -> None:
        built = load_checkpoint(Path(folder), max_tiles=max_tiles)
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
        self._stop_ids = [
            i for i in (self.tokenizer.convert_tokens_to_ids(t) for t in (IM_END, END_OF_TEXT)) if isinstance(i, int)
        ]
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
        renderer = self._renderer
        if max_tiles is not None and max_tiles != self.tiler.max_tiles:
            renderer = replace(renderer, tiler=replace(self.tiler, max_tiles=max_tiles))
        prompt = renderer.prompt(messages, images)
        budget = self.max_model_len - len(prompt)
        if budget < 1:
            raise ValueError(f"the prompt has {len(prompt)} tokens; the model's length is {self.max_model_len}")
        new_tokens = min(max_tokens, budget)
        input_ids = torch.from_numpy(prompt.input_ids)[None]
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": new_tokens,
            "eos_token_id": self._stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": temperature > 0,
        }
        if prompt.pixel_values is not None:
            kwargs["pixel_values"] = torch.from_numpy(prompt.pixel_values).to(self.model.dtype)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(**kwargs)[0, input_ids.shape[1] :].tolist()
        stopped = bool(output) and output[-1] in self._stop_ids
        text = str(self.tokenizer.decode(output[:-1] if stopped else output, skip_special_tokens=True))
        return Completion(
            text=text.strip(),
            finish_reason="stop" if stopped else "length",
            prompt_tokens=len(prompt),
            completion_tokens=len(output),
        )
