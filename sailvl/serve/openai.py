"""The OpenAI chat-completions wire format: requests parsed into messages and images, responses built.

Pure functions; errors are `RequestError`s that the server turns into OpenAI-style 400 answers naming the field.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sailvl.data.tokens import IMAGE_PLACEHOLDER

ROLES = ("system", "user", "assistant")


class RequestError(ValueError):
    """A request the server refuses; `param` is the offending field (`messages[0].content[1].image_url`)."""

    def __init__(self, param: str, message: str, status: int = 400, code: str = "invalid_request_error") -> None:
        super().__init__(f"{param}: {message}")
        self.param, self.message, self.status, self.code = param, message, status, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": f"{self.param}: {self.message}", "type": self.code, "param": self.param}}


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]  # content with `<image>` placeholders where images were
    images: list[bytes]
    max_tokens: int
    temperature: float
    seed: int | None
    max_tiles: int | None
    """`mm_processor_kwargs.max_patches`, the field vLLM's InternVL processor reads: tiles per image, thumbnail
    excluded (None: the server's own)."""
    return_token_ids: bool
    """Answer with the prompt's and the completion's token ids too (vLLM's `return_token_ids`)."""


def parse_chat_request(body: Any, *, default_max_tokens: int) -> ChatRequest:
    if not isinstance(body, dict):
        raise RequestError("body", f"expected a JSON object; found {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model", f"expected the served model's name; found {model!r}")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError("messages", "expected a non-empty list of messages")
    messages: list[dict[str, str]] = []
    images: list[bytes] = []
    for i, message in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(f"{where}.role", f"expected one of {', '.join(ROLES)}; found {message!r:.80}")
        content = message.get("content")
        messages.append({"role": message["role"], "content": _content(content, where, images)})
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", default_max_tokens))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError("max_tokens", f"expected a positive integer; found {max_tokens!r}")
    temperature = body.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise RequestError("temperature", f"expected a number in [0, 2]; found {temperature!r}")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed", f"expected an integer; found {seed!r}")
    max_tiles = _max_patches(body.get("mm_processor_kwargs"))
    return_token_ids = body.get("return_token_ids", False)
    if not isinstance(return_token_ids, bool):
        raise RequestError("return_token_ids", f"expected true or false; found {return_token_ids!r}")
    if body.get("stream"):
        raise RequestError(
            "stream", "streaming is not supported by sailvl serve; send stream: false", code="not_supported"
        )
    n = body.get("n", 1)
    if n != 1:
        raise RequestError("n", f"only n=1 is supported; found {n!r}", code="not_supported")
    return ChatRequest(
        model=model,
        messages=messages,
        images=images,
        max_tokens=max_tokens,
        temperature=float(temperature),
        seed=seed,
        max_tiles=max_tiles,
        return_token_ids=return_token_ids,
    )


def _max_patches(kwargs: Any) -> int | None:
    """The tile limit in vLLM's `mm_processor_kwargs` (the only processor setting this server takes)."""
    if kwargs is None:
        return None
    if not isinstance(kwargs, dict):
        raise RequestError("mm_processor_kwargs", f"expected an object; found {kwargs!r:.80}")
    unknown = sorted(set(kwargs) - {"max_patches"})
    if unknown:
        raise RequestError(f"mm_processor_kwargs.{unknown[0]}", "not supported; this server takes max_patches only")
    value = kwargs.get("max_patches")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64):
        raise RequestError("mm_processor_kwargs.max_patches", f"expected an integer from 1 to 64; found {value!r}")
    return value


def _content(content: Any, where: str, images: list[bytes]) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"{where}.content", f"expected a string or a list of parts; found {type(content).__name__}")
    text = []
    for k, part in enumerate(content):
        at = f"{where}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif kind == "image_url":
            url = part.get("image_url", {}).get("url") if isinstance(part.get("image_url"), dict) else None
            images.append(decode_data_uri(url, f"{at}.image_url.url"))
            text.append(IMAGE_PLACEHOLDER + "\n")
        else:
            raise RequestError(f"{at}.type", f"expected a text or image_url part; found {part!r:.80}")
    return "".join(text)


def decode_data_uri(url: Any, param: str) -> bytes:
    """The bytes of a `data:image/...;base64,...` URI (the only images a server with no network can read)."""
    if not isinstance(url, str) or not url.startswith("data:"):
        shown = url[:40] if isinstance(url, str) else url
        raise RequestError(param, f"expected a data: URI with base64 image bytes; found {shown!r}")
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise RequestError(param, "expected a base64 data URI (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(param, "the base64 payload does not decode") from None


def chat_response(
    *,
    model: str,
    text: str,
    finish_reason: str,
    prompt_token_ids: list[int],
    token_ids: list[int],
    return_token_ids: bool = False,
) -> dict[str, Any]:
    """A chat completion as vLLM writes one; with `return_token_ids`, the token ids where vLLM puts them."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish_reason,
    }
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": len(prompt_token_ids),
            "completion_tokens": len(token_ids),
            "total_tokens": len(prompt_token_ids) + len(token_ids),
        },
    }
    if return_token_ids:
        choice["token_ids"] = token_ids
        body["prompt_token_ids"] = prompt_token_ids
    return body


def models_response(name: str, max_model_len: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "sailvl", "max_model_len": max_model_len}],
    }
