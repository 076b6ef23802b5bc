"""One record through the spec's steps: the I/O shell around the pure steps.

The CPU work (decoding and hashing images, MinHash of text) runs in a thread pool: Pillow, hashlib and numpy release
the GIL, so it uses the pod's cores while the event loop keeps the requests flowing.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sailvl.api.curationrun import CurationStep, DedupStep, JudgeStep, RecaptionStep, ScoreStep
from sailvl.curate import signatures, steps
from sailvl.curate.answers import parse_score, parse_scores
from sailvl.curate.client import ChatClient, RequestFailed
from sailvl.curate.counts import Outcome
from sailvl.curate.images import BadImage, ImageFacts, data_uri, inspect_image
from sailvl.data.records import Record

T = TypeVar("T")
JUDGE_MAX_TOKENS = 256
# Decoding an image this small costs less than handing it to a thread (~0.1 ms and a GIL handover).
INLINE_BYTES = 16 * 1024


@dataclass
class Result:
    id: str
    outcome: Outcome
    reason: str = ""
    record: Record | None = None
    signatures: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def step_key(index: int, step: CurationStep) -> str:
    return f"steps[{index}].{step.kind}"


class Pipeline:
    def __init__(
        self, plan: Sequence[CurationStep], clients: Mapping[str, ChatClient], pool: Executor | None = None
    ) -> None:
        self.plan, self.clients, self.pool = list(plan), clients, pool
        dedups = [s.dedup for s in self.plan if s.dedup is not None]
        self.exact = any(d.image == "exact" for d in dedups)
        self.phash = any(d.image == "phash" for d in dedups)
        self.for_request = any(s.model is not None for s in self.plan)

    async def _cpu(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def _inspect(self, images: tuple[bytes, ...]) -> list[ImageFacts]:
        return [inspect_image(i, exact=self.exact, phash=self.phash, for_request=self.for_request) for i in images]

    async def run(self, record: Record) -> Result:
        result = Result(id=record.id, outcome="kept")
        facts: list[ImageFacts] = []
        if record.images:
            start = time.perf_counter()
            try:
                if sum(map(len, record.images)) <= INLINE_BYTES:
                    facts = self._inspect(record.images)
                else:
                    facts = await self._cpu(self._inspect, record.images)
            except BadImage:
                result.outcome, result.reason = "rejected", "bad_image"
                return result
            finally:
                result.seconds["decode"] += time.perf_counter() - start
        uris = [data_uri(data, f) for data, f in zip(record.images, facts, strict=True)] if self.for_request else []
        for index, step in enumerate(self.plan):
            start = time.perf_counter()
            try:
                outcome = await self._step(index, step, record, uris, facts, result)
            except RequestFailed as e:
                outcome = steps.Verdict("rejected", e.reason)
            finally:
                result.seconds[step_key(index, step)] += time.perf_counter() - start
            if isinstance(outcome, steps.Verdict):
                result.outcome, result.reason = outcome.outcome, outcome.reason
                return result
            record = outcome
        result.record = record
        return result

    async def _step(
        self, index: int, step: CurationStep, record: Record, uris: list[str], facts: list[ImageFacts], result: Result
    ) -> Record | steps.Verdict:
        if step.recaption is not None:
            return await self._recaption(step.recaption, record, uris)
        if step.judge is not None:
            return await self._judge(step.judge, record, uris)
        if step.score is not None:
            return await self._score(step.score, record, uris)
        if step.filter is not None:
            return steps.check_filter(step.filter, record, [f.sides for f in facts]) or record
        assert step.dedup is not None
        result.signatures.update(await self._signatures(index, step.dedup, record, facts))
        return record

    async def _recaption(self, step: RecaptionStep, record: Record, uris: list[str]) -> Record | steps.Verdict:
        messages = steps.recaption_messages(step, record, uris)
        if isinstance(messages, steps.Verdict):
            return messages
        client = self.clients[step.model]
        answer = await client.complete(messages, max_tokens=step.max_tokens, temperature=step.temperature)
        return steps.apply_caption(record, answer, step.model)

    async def _judge(self, step: JudgeStep, record: Record, uris: list[str]) -> Record | steps.Verdict:
        messages = steps.judge_messages(step, record, uris)
        if isinstance(messages, steps.Verdict):
            return messages
        client = self.clients[step.model]
        answer = await client.complete(messages, max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
        score = parse_score(answer.text)
        if score is None:  # one more chance, reminded of the format
            retry = steps.retry_messages(messages, answer.text, steps.JUDGE_EXAMPLE)
            score = parse_score((await client.complete(retry, max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)).text)
        return steps.apply_judge(step, record, score, step.model)

    async def _score(self, step: ScoreStep, record: Record, uris: list[str]) -> Record | steps.Verdict:
        messages = steps.score_messages(step, record, uris)
        client = self.clients[step.model]
        answer = await client.complete(messages, max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
        scores = parse_scores(answer.text, step.metrics)
        if scores is None:
            retry = steps.retry_messages(messages, answer.text, steps.score_example(step))
            answer = await client.complete(retry, max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
            scores = parse_scores(answer.text, step.metrics)
        return steps.apply_scores(record, scores)

    async def _signatures(self, index: int, step: DedupStep, record: Record, facts: list[ImageFacts]) -> dict[str, Any]:
        out = signatures.image_signature(index, step, facts)
        if step.text == "minhash":
            text = steps.subject_text(record)
            out[f"_dedup{index}_minhash"] = await self._cpu(signatures.text_minhash, text) if text else None
        return out
