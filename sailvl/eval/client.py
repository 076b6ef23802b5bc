"""An async client for OpenAI-compatible servers (vLLM, `sailvl serve`): chat completions with images as data
URIs, a bound on requests in flight, and retries with exponential backoff for what a retry can fix (connection
errors, timeouts, 408/429/5xx, honouring Retry-After). A request the server refuses for good (another 4xx, such as
a prompt longer than the context) raises `RequestRejected` at once; one that still fails after every retry raises
`ServerUnavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from sailvl.eval.items import image_mime

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ServerUnavailable(RuntimeError):
    """The server failed a request on every attempt; rerunning later may succeed."""


class RequestRejected(RuntimeError):
    """The server refused a request for a reason a retry cannot fix (HTTP 4xx)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 600.0  # one request, generation included

    def delay(self, attempt: int) -> float:
        """Backoff before retry number `attempt` (1-based): exponential, with full jitter so clients spread out."""
        return random.uniform(0, min(self.max_delay, self.initial_delay * 2 ** (attempt - 1)))


def image_part(data: bytes) -> dict[str, Any]:
    url = f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def tiles_kwargs(max_tiles: int) -> dict[str, Any]:
    """The request field that sets the tiles per image: `mm_processor_kwargs.max_patches`, which vLLM's InternVL
    processor reads (its server must run with `--trust-request-mm-kwargs`) and `sailvl serve` takes too."""
    return {"mm_processor_kwargs": {"max_patches": max_tiles}}


def user_message(text: str, images: Sequence[bytes] = ()) -> dict[str, Any]:
    """One user turn: the images first (as InternVL-style models expect `<image>` before the text), then the text."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*(image_part(i) for i in images), {"type": "text", "text": text}]}


class ChatClient:
    """Chat completions against one OpenAI base URL (ending in /v1), at most `concurrency` requests in flight."""

    def __init__(self, base_url: str, *, concurrency: int, retry: RetryPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._gate = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatClient:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.retry.timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def models(self) -> list[str]:
        """The ids of the served models (GET /models)."""
        body = await self._request("GET", "/models", None)
        data = body.get("data")
        if not isinstance(data, list):
            raise ServerUnavailable(f"{self.base_url}/models did not list models: {json.dumps(body)[:200]}")
        return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        max_tokens: int,
        temperature: float = 0.0,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """The text of the first choice of a chat completion (greedy by default)."""
        payload = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        body = await self._request("POST", "/chat/completions", payload | (extra or {}))
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            found = json.dumps(body)[:300]
            raise ServerUnavailable(f"unexpected chat completion from {self.base_url}: {found}") from None
        return content if isinstance(content, str) else ""

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        assert self._session is not None, "use `async with ChatClient(...)`"
        url = self.base_url + path
        last = "no attempt made"
        async with self._gate:
            for attempt in range(1, self.retry.attempts + 1):
                wait: float | None = None
                try:
                    async with self._session.request(method, url, json=payload) as response:
                        text = await response.text()
                        if response.status == 200:
                            return _json_object(text, url)
                        if response.status not in RETRYABLE_STATUS:
                            raise RequestRejected(response.status, text)
                        last = f"HTTP {response.status}: {text[:200]}"
                        wait = _retry_after(response.headers.get("Retry-After"))
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if attempt < self.retry.attempts:
                    await asyncio.sleep(wait if wait is not None else self.retry.delay(attempt))
        raise ServerUnavailable(f"{method} {url} failed {self.retry.attempts} times; last: {last}")


def _json_object(text: str, url: str) -> dict[str, Any]:
    body = json.loads(text)  # a ValueError here is retried: a proxy may have cut the body short
    if not isinstance(body, dict):
        raise ValueError(f"{url} answered with JSON that is not an object")
    return body


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None
