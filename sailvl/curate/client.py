"""An async client of OpenAI-compatible `/v1/chat/completions` endpoints (vLLM, `sailvl serve`), built on aiohttp.

One `ChatClient` per served model; all of a worker's clients share one aiohttp session and one semaphore, so the
worker keeps at most `workers.concurrency` requests in flight in all. Failed attempts are retried with exponential
backoff and full jitter on 429, 5xx, timeouts and connection errors (a backoff does not hold a slot). What still
fails raises `RequestFailed` with the reason the record is rejected for; when every one of the last many requests
failed, the servers are down rather than the records bad, and `ServersUnavailable` stops the worker instead of
rejecting the whole input.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from sailvl.curate.metrics import CurateMetrics

JSON = {"Content-Type": "application/json"}
TRANSIENT = ("server_error", "rate_limited", "timeout", "connection_error")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 6
    """Tries per request, the first included."""
    base_delay: float = 0.5
    """Backoff before the second try; doubles each time (full jitter), up to max_delay."""
    max_delay: float = 30.0
    timeout: float = 600.0
    """Seconds one try may take, queueing in the server included."""
    connect_timeout: float = 30.0
    abort_after: int | None = None
    """Consecutive failed requests (after their retries) that mean the servers are down; default max(16, limit)."""

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        delay = rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        return max(delay, min(retry_after, self.max_delay)) if retry_after is not None else delay


class RequestFailed(Exception):
    """A request that failed for good; `reason` is the reject reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class ServersUnavailable(RuntimeError):
    """Too many requests in a row failed after retries: stop (and be retried) rather than reject everything."""


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None


class Health:
    """Consecutive failures across a worker's requests."""

    def __init__(self, abort_after: int) -> None:
        self.abort_after, self.failures, self.last = abort_after, 0, ""

    def ok(self) -> None:
        self.failures = 0

    def failed(self, error: RequestFailed, url: str) -> None:
        if error.reason not in TRANSIENT:
            return
        self.failures += 1
        self.last = f"{url}: {error}"
        if self.failures >= self.abort_after:
            raise ServersUnavailable(f"{self.failures} requests in a row failed after retries; the last: {self.last}")


@asynccontextmanager
async def open_session(limit: int) -> AsyncIterator[aiohttp.ClientSession]:
    """One connection pool for all of a worker's clients (each request carries its client's timeout)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


class ChatClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        model: str,
        *,
        limit: asyncio.Semaphore,
        health: Health,
        policy: RetryPolicy | None = None,
        metrics: CurateMetrics | None = None,
    ) -> None:
        self.session, self.model, self.limit, self.health = session, model, limit, health
        self.policy = policy or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=self.policy.timeout, sock_connect=self.policy.connect_timeout)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._in_flight = metrics.in_flight.labels(model=model) if metrics else None
        self._latency = metrics.latency.labels(model=model) if metrics else None
        self._rng = random.Random()

    async def complete(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> Completion:
        body = json.dumps(
            {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        ).encode()
        try:
            completion = await self._with_retries(body)
        except RequestFailed as e:
            self.health.failed(e, self.url)
            raise
        self.health.ok()
        return completion

    async def _with_retries(self, body: bytes) -> Completion:
        failure = RequestFailed("connection_error", "no attempt made")
        retry_after: float | None = None
        for attempt in range(self.policy.attempts):
            if attempt:
                await asyncio.sleep(self.policy.backoff(attempt, retry_after, self._rng))
            try:
                status, payload, retry_after = await self._post(body)
            except TimeoutError:
                failure = RequestFailed("timeout", f"no answer within {self.policy.timeout:g} s")
                continue
            except aiohttp.ClientError as e:
                failure = RequestFailed("connection_error", f"{type(e).__name__}: {e}")
                continue
            if status == 200:
                return _completion(payload)
            detail = f"HTTP {status} from {self.url}: {payload[:300].decode('utf-8', 'replace')}"
            if status == 429:
                failure = RequestFailed("rate_limited", detail)
            elif status >= 500:
                failure = RequestFailed("server_error", detail)
            else:  # e.g. 400 for a prompt longer than the model's context: the same request will fail again
                raise RequestFailed("request_rejected", detail)
        raise RequestFailed(failure.reason, f"{failure.detail} (after {self.policy.attempts} tries)")

    async def _post(self, body: bytes) -> tuple[int, bytes, float | None]:
        async with self.limit:
            if self._in_flight is not None:
                self._in_flight.inc()
            start = time.perf_counter()
            try:
                async with self.session.post(self.url, data=body, headers=JSON, timeout=self._timeout) as response:
                    payload = await response.read()
                    return response.status, payload, _seconds(response.headers.get("Retry-After"))
            finally:
                if self._in_flight is not None and self._latency is not None:
                    self._in_flight.dec()
                    self._latency.observe(time.perf_counter() - start)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential backoff stands in for it


def _completion(payload: bytes) -> Completion:
    try:
        data = json.loads(payload)
        choice = data["choices"][0]
        content = choice["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise RequestFailed(
            "bad_response", f"expected an OpenAI chat completion; found {payload[:200].decode('utf-8', 'replace')!r}"
        ) from None
    if content is not None and not isinstance(content, str):
        raise RequestFailed("bad_response", f"expected message.content to be a string; found {type(content).__name__}")
    return Completion(text=content or "", finish_reason=choice.get("finish_reason"))
