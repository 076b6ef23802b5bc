"""A CurationRun's decisions: models, then the Indexed Job of workers, then finalize; counts from the pods.

`status.progress` is the sum of the termination messages of the workers that have finished (`{worker, shards, in,
kept, dropped, rejected}`), so it only ever shows what was reported; `shardsTotal` and `percent` appear once every
worker has reported. After finalize (the global dedup), progress and `status.output` come from its message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sailvl.api import CurationRun, CurationRunStatus
from sailvl.api.curationrun import CurationOutputStatus, CurationProgress
from sailvl_operator.builders.curation import (
    FINALIZE,
    WORKER,
    build_curation_children,
    build_curation_job,
    build_curation_spec_configmap,
    build_finalize_job,
)
from sailvl_operator.builders.meta import finalize_job_name, workers_job_name
from sailvl_operator.builders.train import BuildContext
from sailvl_operator.observed import JobState, results
from sailvl_operator.served import Step, WorkloadObservation, WorkloadPlan, WorkloadReconciler
from sailvl_operator.settings import Settings


@dataclass(frozen=True)
class Counts:
    """What a worker or finalize reported: records in, kept, dropped and rejected by reason."""

    shards: int
    records_in: int
    kept: int
    dropped: dict[str, int]
    rejected: dict[str, int]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _reasons(value: Any) -> dict[str, int] | None:
    if not isinstance(value, Mapping):
        return None
    out = {str(k): _count(v) for k, v in value.items()}
    return None if any(v is None for v in out.values()) else {k: v for k, v in out.items() if v is not None}


def counts_of(message: Mapping[str, Any]) -> Counts | None:
    """The counts in a termination message, or None if it does not hold them all."""
    shards, records_in, kept = _count(message.get("shards")), _count(message.get("in")), _count(message.get("kept"))
    dropped, rejected = _reasons(message.get("dropped", {})), _reasons(message.get("rejected", {}))
    if shards is None or records_in is None or kept is None or dropped is None or rejected is None:
        return None
    return Counts(shards, records_in, kept, dropped, rejected)


def worker_counts(messages: list[dict[str, Any]], workers: int) -> dict[int, Counts]:
    """Worker index → its counts; a worker that ran again (after a resume) reports the same shards, last wins."""
    found: dict[int, Counts] = {}
    for message in messages:
        index, counts = _count(message.get("worker")), counts_of(message)
        if index is not None and index < workers and counts is not None:
            found[index] = counts
    return found


class CurationReconciler(WorkloadReconciler[CurationRun, CurationRunStatus]):
    KIND = CurationRun
    STATUS = CurationRunStatus
    shards_seen = False  # whether this reconcile read the workers' shard counts

    @property
    def run_(self) -> CurationRun:
        assert self.resource is not None
        return self.resource

    def steps(self) -> list[Step]:
        name = self.run_.name
        return [
            Step(workers_job_name(name), "workers", WORKER, build_curation_job, needs_models=True, what="workers"),
            Step(finalize_job_name(name), FINALIZE, FINALIZE, build_finalize_job, needs_models=False, what="finalize"),
        ]

    def build_all(self, ctx: BuildContext) -> list[dict[str, Any]]:
        return build_curation_children(self.run_, ctx)

    def spec_configmap(self, ctx: BuildContext) -> dict[str, Any]:
        return build_curation_spec_configmap(self.run_, ctx)

    def suspend_requested(self) -> bool:
        return self.run_.spec.suspend

    def keep_models(self) -> bool:
        return self.resource is not None and self.resource.spec.keep_models

    def unobserved(self) -> list[tuple[str, str]]:
        # A run that succeeded after its workers' pods were gone knows its counts from finalize, not its shards.
        stored = ((self.obs.body.get("status") or {}).get("progress") or {}).keys()
        return [] if self.shards_seen or "shardsDone" in stored else [("progress", "shardsDone")]

    def step_observed(self, step: Step, state: JobState) -> None:
        if step.container == WORKER:
            self.worker_progress()

    def worker_progress(self) -> None:
        workers = self.run_.spec.workers.parallelism
        reported = worker_counts(results(self.pods("workers"), WORKER), workers)
        if not reported:
            return  # nothing reported (yet, or the pods went with a Job a suspend deleted): keep what was seen
        self.shards_seen = True
        done = sum(c.shards for c in reported.values())
        previous = self.status.progress
        if previous is not None and previous.shards_done > done:
            return
        complete = len(reported) == workers
        dropped: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for counts in reported.values():
            dropped.update(counts.dropped)
            rejected.update(counts.rejected)
        self.status.progress = CurationProgress(
            shards_done=done,
            shards_total=done if complete else None,
            percent=100.0 if complete else None,
            samples_in=sum(c.records_in for c in reported.values()),
            samples_out=sum(c.kept for c in reported.values()),
            dropped=dict(sorted(dropped.items())),
            rejected=dict(sorted(rejected.items())),
        )

    def succeed(self) -> None:
        spec = self.run_.spec
        messages = results(self.pods(FINALIZE), FINALIZE)
        final = counts_of(messages[-1]) if messages else None
        samples = _count(messages[-1].get("samples")) if messages else None
        if final is None or samples is None:
            self.event(
                "Warning",
                "TerminationMessageMissing",
                f"Job {finalize_job_name(self.run_.name)} completed without its counts; status.output has the URI only",
            )
            self.status.output = CurationOutputStatus(uri=spec.output.uri)
            return
        previous = self.status.progress or CurationProgress()
        self.status.progress = previous.model_copy(
            update={
                "percent": 100.0,  # finalize succeeds only once every input shard is done
                "samples_in": final.records_in,
                "samples_out": final.kept,
                "dropped": final.dropped,
                "rejected": final.rejected,
            }
        )
        self.status.output = CurationOutputStatus(uri=spec.output.uri, shards=final.shards, samples=samples)


def reconcile_run(observation: WorkloadObservation, settings: Settings) -> WorkloadPlan:
    return CurationReconciler(observation, settings).run()
