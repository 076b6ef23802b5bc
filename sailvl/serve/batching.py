"""Requests that arrive while the model is busy wait here and go to the engine together, up to `max_num_seqs`
(vLLM's name for the same limit). One generation runs at a time; a sampled request runs alone (see engine.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from sailvl.serve.engine import Completion, Engine, GenerationRequest

Waiter = tuple[GenerationRequest, "asyncio.Future[Completion]"]


class Batcher:
    def __init__(
        self, engine: Engine, *, max_num_seqs: int, on_change: Callable[[int, int], None] | None = None
    ) -> None:
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs: expected at least 1; found {max_num_seqs}")
        self.engine, self.max_num_seqs = engine, max_num_seqs
        self._on_change = on_change or (lambda waiting, running: None)
        self._waiting: deque[Waiter] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sailvl-serve-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._waiting:
            future.cancel()

    async def submit(self, request: GenerationRequest) -> Completion:
        """The request's completion; raises ValueError when its prompt is refused."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        self._report()
        self._wake.set()
        return await future

    def take(self) -> list[Waiter]:
        """The next batch: the oldest request, and if it is greedy, the greedy ones behind it (sampled ones keep
        their places). Requests whose client went away are dropped."""
        while self._waiting and self._waiting[0][1].done():
            self._waiting.popleft()
        if not self._waiting:
            return []
        first = self._waiting.popleft()
        if not first[0].greedy:
            return [first]
        batch, skipped = [first], deque[Waiter]()
        while self._waiting and len(batch) < self.max_num_seqs:
            waiter = self._waiting.popleft()
            if waiter[1].done():
                continue
            (batch if waiter[0].greedy else skipped).append(waiter)
        self._waiting.extendleft(reversed(skipped))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self.take()
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._running = len(batch)
            self._report()
            try:
                results = await loop.run_in_executor(
                    None, self.engine.complete_batch, [request for request, _ in batch]
                )
            except Exception as exc:  # the model failed: every request of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Completion):
                        future.set_result(result)
                    else:
                        future.set_exception(result)
            self._running = 0
            self._report()

    def _report(self) -> None:
        self._on_change(len(self._waiting), self._running)
