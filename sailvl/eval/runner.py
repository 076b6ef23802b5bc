"""The evaluation of one suite, top to bottom: for each benchmark load its items, ask the model every item not yet
answered (at most `workers.concurrency` in flight, each answer appended to `<benchmark>.jsonl` as it arrives), grade
the answers (asking the judge where a rule cannot read them), score; then write `results.json`.

A rerun asks only what is missing: an item counts as answered when its prediction is in the file with the
fingerprint of what would be asked now (prompt, images, maxTiles, token budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sailvl.api.evalsuite import EvalSuiteSpec
from sailvl.eval import registry
from sailvl.eval.base import JUDGE, JUDGE_FAILED, NEEDS_JUDGE, RULE, Benchmark, Grade, Score
from sailvl.eval.client import ChatClient, RequestRejected, RetryPolicy, tiles_kwargs, user_message
from sailvl.eval.exporter import EvalMetrics
from sailvl.eval.files import model_label, write_files
from sailvl.eval.items import Item, as_scored
from sailvl.eval.judge import Judge
from sailvl.eval.loading import ConfigError, load_items
from sailvl.eval.provenance import provenance
from sailvl.eval.report import summarize
from sailvl.eval.store import JudgeCache, PredictionStore, fingerprint, write_json_atomic
from sailvl.eval.uncertainty import interval

log = logging.getLogger(__name__)
TOTAL_TILES = 64  # SAIL-VL's cap on tiles over all images of one question
DEGRADED_SHARE = 0.05  # judge failures beyond this share of its calls make a benchmark's score degraded
JUDGE_TOKENS = 128
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """OpenAI base URLs (ending in /v1) of the model under test and of the judge."""

    model: str
    judge: str | None = None


@dataclass(frozen=True)
class Request:
    item: Item
    key: str
    text: str
    max_tiles: int


class ServedJudge:
    """The suite's judge model, with every reply cached in `<benchmark>.judge.jsonl`."""

    def __init__(self, client: ChatClient, model: str, cache: JudgeCache) -> None:
        self.client, self.model, self.cache = client, model, cache

    async def ask(self, prompt: str, *, temperature: float = 0.0) -> str:
        key = fingerprint(self.model, prompt, repr(temperature))
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        try:
            reply = await self.client.chat(
                [user_message(prompt)], model=self.model, max_tokens=JUDGE_TOKENS, temperature=temperature
            )
        except RequestRejected as exc:
            log.warning("the judge refused a prompt (%s); counting its reply as unreadable", exc)
            reply = ""
        self.cache.put(key, reply)
        return reply


async def served_model(client: ChatClient, preferred: str | None = None) -> str:
    """The model id to request: `preferred` if the server lists it, else the first listed."""
    ids = await client.models()
    if not ids:
        raise ConfigError(f"{client.base_url}/models lists no model")
    if preferred in ids:
        return str(preferred)
    if len(ids) > 1:
        log.warning("%s serves %s; asking %s", client.base_url, ids, ids[0])
    return ids[0]


class SuiteRunner:
    def __init__(
        self,
        spec: EvalSuiteSpec,
        *,
        endpoints: Endpoints,
        output: Path | None,
        metrics: EvalMetrics | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if spec.judge is not None and endpoints.judge is None:
            raise ConfigError("spec.judge is set but no judge URL was given (SAILVL_MODEL_URL_JUDGE)")
        self.spec, self.endpoints, self.output = spec, endpoints, output
        self.metrics = metrics or EvalMetrics()
        self.label = "model"  # the model's name in results file names, set once the server answers
        for benchmark in spec.benchmarks:  # from 0: a benchmark not started yet shows 0 answered, not no data
            self.metrics.add_items(benchmark, 0)
        self.retry = retry

    async def run(self) -> dict[str, Any]:
        """Evaluate every benchmark; return the results document (also written to `<output>/results.json`)."""
        if self.output is None:
            with tempfile.TemporaryDirectory(prefix="sailvl-eval-") as scratch:
                log.warning("no output folder: predictions go to %s and are lost at exit (no resume)", scratch)
                return await self._run(Path(scratch), keep=False)
        return await self._run(self.output, keep=True)

    async def _run(self, folder: Path, *, keep: bool) -> dict[str, Any]:
        concurrency = self.spec.workers.concurrency
        scores: dict[str, Score] = {}
        extra: dict[str, dict[str, Any]] = {}
        async with contextlib.AsyncExitStack() as stack:
            client = ChatClient(self.endpoints.model, concurrency=concurrency, retry=self.retry)
            model_client = await stack.enter_async_context(client)
            model = await served_model(model_client)
            log.info("evaluating %s at %s on %d benchmarks", model, self.endpoints.model, len(self.spec.benchmarks))
            judge_client, judge_model = None, None
            if self.spec.judge is not None and self.endpoints.judge is not None:
                client = ChatClient(self.endpoints.judge, concurrency=concurrency, retry=self.retry)
                judge_client = await stack.enter_async_context(client)
                judge_model = await served_model(judge_client, self.spec.judge.name)
            self.label = model_label(self.spec.model.uri, model)
            for name in self.spec.benchmarks:
                benchmark = registry.get(name)
                judge = None
                if judge_client is not None and judge_model is not None and benchmark.judged:
                    judge = ServedJudge(judge_client, judge_model, JudgeCache(folder / f"{name}.judge.jsonl"))
                try:
                    scores[name], extra[name] = await self._benchmark(benchmark, model_client, model, judge, folder)
                finally:
                    if judge is not None:
                        judge.cache.close()
                self.metrics.set_score(name, scores[name].score)
                log.info("%s: %.2f (%s)", name, scores[name].score, scores[name].metric)
        summary = {"model": model, "judge": judge_model} | summarize(scores, extra=extra)
        summary["provenance"] = await asyncio.to_thread(provenance, self.spec.model.uri)
        if keep:
            write_json_atomic(folder / "results.json", summary)
        return summary

    async def _benchmark(
        self, benchmark: Benchmark, client: ChatClient, model: str, judge: Judge | None, folder: Path
    ) -> tuple[Score, dict[str, Any]]:
        override = self.spec.overrides.get(benchmark.name)
        limit = override.limit if override else None
        tiles = self.spec.tiles_for(benchmark.name)
        items = await asyncio.to_thread(load_items, benchmark, self.spec.data.uri, limit)
        requests = [self._request(benchmark, item, tiles) for item in items]
        store = PredictionStore(folder / f"{benchmark.name}.jsonl")
        answered = store.answered({r.item.index: r.key for r in requests})
        todo = [r for r in requests if r.item.index not in answered]
        log.info("%s: %d items, %d answered before, %d to ask", benchmark.name, len(items), len(answered), len(todo))
        self.metrics.add_items(benchmark.name, len(answered))
        try:
            await self._ask_all(benchmark, client, model, todo, store, answered)
        finally:
            store.close()
        records = [answered[item.index] for item in items]
        predictions = [benchmark.model_output(r["prediction"]) for r in records]
        grades = await benchmark.grade_all(items, [as_scored(p) for p in predictions], judge)
        score = benchmark.aggregate(items, grades)
        refused = sum("error" in r for r in records)
        if refused:
            note = f"{refused} requests the server refused (e.g. longer than the context) are scored as wrong"
            score = Score(score.score, score.metric, score.items, score.raw, (*score.limitations, note))
        rows = zip(items, records, grades, strict=True)
        graded = [{"index": item.index, "reply": r["prediction"], "prediction": p, **g}
                  for (item, r, g), p in zip(rows, predictions, strict=True)]  # fmt: skip
        write_json_atomic(folder / f"{benchmark.name}.grades.json", graded)
        judge_name = judge.model if isinstance(judge, ServedJudge) else None
        files = write_files(
            folder,
            model=self.label,
            judge=judge_name,
            benchmark=benchmark,
            items=items,
            predictions=predictions,
            score=score,
        )
        detail = {
            "maxTiles": tiles,
            "refused": refused,
            "limit": limit,
            "judge": judge_accounting(grades, judge_model=judge_name),
            "uncertainty": interval(benchmark, items, grades),
            "files": sorted([f"{benchmark.name}.grades.json", *(f.name for f in files)]),
        }
        return score, detail

    def _request(self, benchmark: Benchmark, item: Item, tiles: int) -> Request:
        text = benchmark.prompt(item)
        per_image = max(1, min(tiles, TOTAL_TILES // max(1, len(item.images))))
        key = fingerprint(benchmark.name, text, *item.images, per_image, benchmark.max_tokens)
        return Request(item, key, text, per_image)

    async def _ask_all(
        self,
        benchmark: Benchmark,
        client: ChatClient,
        model: str,
        todo: Sequence[Request],
        store: PredictionStore,
        answered: dict[str, dict[str, Any]],
    ) -> None:
        pending = iter(todo)
        progress = _Progress(benchmark.name, len(answered) + len(todo), len(answered))

        async def worker() -> None:
            for request in pending:  # one iterator shared by every worker: each request is taken once
                record = await _ask(benchmark, client, model, request)
                store.append(record)
                answered[request.item.index] = record
                self.metrics.add_items(benchmark.name)
                progress.step()

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the other workers
                for _ in range(min(client.concurrency, len(todo))):
                    group.create_task(worker())
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None  # callers handle ServerUnavailable, not a group of them
        progress.done()


async def _ask(benchmark: Benchmark, client: ChatClient, model: str, request: Request) -> dict[str, Any]:
    if benchmark.transforms_images:  # resizing and re-encoding would stall every other request in flight
        images = await asyncio.to_thread(benchmark.images, request.item)
    else:
        images = benchmark.images(request.item)
    message = user_message(request.text, images)
    record: dict[str, Any] = {"index": request.item.index, "key": request.key}
    try:
        reply = await client.chat(
            [message], model=model, max_tokens=benchmark.max_tokens, extra=tiles_kwargs(request.max_tiles)
        )
    except RequestRejected as exc:
        log.warning("%s item %s: the server refused it (%s)", benchmark.name, request.item.index, exc)
        return record | {"prediction": "", "error": str(exc)}
    return record | {"prediction": reply}


def judge_accounting(grades: Sequence[Grade], *, judge_model: str | None) -> dict[str, Any]:
    """How the replies were read: by rule, by the judge, not even by the judge, or by rule where VLMEvalKit would
    have asked a judge the suite does not have; the share of items the judge saw, and whether its failures make
    the score degraded (more than DEGRADED_SHARE of the items it was asked about)."""
    uses = Counter(str(g.get("judge", RULE)) for g in grades)
    asked = uses[JUDGE] + uses[JUDGE_FAILED]
    return {
        "model": judge_model,
        "rule": uses[RULE],
        "asked": asked,
        "failures": uses[JUDGE_FAILED],
        "needsJudge": uses[NEEDS_JUDGE],
        "share": round(asked / len(grades), 4) if grades else 0.0,
        "judgeFree": asked == 0,
        "degraded": asked > 0 and uses[JUDGE_FAILED] > DEGRADED_SHARE * asked,
    }


class _Progress:
    def __init__(self, name: str, total: int, done: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.total, self.done_before, self.count = name, total, done, 0
        self.clock = clock
        self.start = self.last = clock()

    def step(self) -> None:
        self.count += 1
        now = self.clock()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            self._log(now)

    def done(self) -> None:
        if self.count:
            self._log(self.clock())

    def _log(self, now: float) -> None:
        rate = self.count / max(now - self.start, 1e-9)
        log.info("%s: %d/%d answered (%.1f items/s)", self.name, self.done_before + self.count, self.total, rate)
