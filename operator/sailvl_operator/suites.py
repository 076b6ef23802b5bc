"""An EvalSuite's decisions: the model under test (and a judge) served, then one Job of `sailvl eval`; its
termination message `{results, average, groups}` becomes `status.results`, `average` and `groups`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sailvl.api import EvalSuite, EvalSuiteStatus
from sailvl.api import conditions as c
from sailvl.api.evalsuite import EvalProgress, GroupScores, degraded_condition
from sailvl_operator.builders.evaluation import EVAL, build_eval_children, build_eval_job, build_eval_spec_configmap
from sailvl_operator.builders.meta import eval_job_name
from sailvl_operator.builders.train import BuildContext
from sailvl_operator.observed import results
from sailvl_operator.served import Step, WorkloadObservation, WorkloadPlan, WorkloadReconciler
from sailvl_operator.settings import Settings

GROUP_KEYS = ("generalVQA", "ocrVQA", "mathKnowledge", "hallucination")


def _score(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def scores_of(message: Mapping[str, Any], benchmarks: list[str]) -> tuple[dict[str, float], float | None, GroupScores]:
    """(results, average, groups) from an eval termination message; what is not a finite number is left out."""
    raw = message.get("results")
    found = {str(k): _score(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
    scores = {k: v for k, v in found.items() if v is not None and k in benchmarks}
    groups = message.get("groups") if isinstance(message.get("groups"), Mapping) else {}
    assert isinstance(groups, Mapping)
    by_group = {k: _score(groups.get(k)) for k in GROUP_KEYS}
    return scores, _score(message.get("average")), GroupScores.model_validate(by_group)


class EvalReconciler(WorkloadReconciler[EvalSuite, EvalSuiteStatus]):
    KIND = EvalSuite
    STATUS = EvalSuiteStatus

    @property
    def suite(self) -> EvalSuite:
        assert self.resource is not None
        return self.resource

    def steps(self) -> list[Step]:
        return [Step(eval_job_name(self.suite.name), EVAL, EVAL, build_eval_job, needs_models=True, what="eval")]

    def build_all(self, ctx: BuildContext) -> list[dict[str, Any]]:
        return build_eval_children(self.suite, ctx)

    def spec_configmap(self, ctx: BuildContext) -> dict[str, Any]:
        return build_eval_spec_configmap(self.suite, ctx)

    def suspend_requested(self) -> bool:
        return self.suite.spec.suspend

    def unobserved(self) -> list[tuple[str, str]]:
        return [("progress", "itemsDone")]  # the eval's message has scores, not item counts

    def finish(self) -> WorkloadPlan:
        plan = super().finish()
        if not plan.status.get("results"):
            plan.status.pop("results", None)  # no scores yet: not an empty set of them
        return plan

    def succeed(self) -> None:
        messages = results(self.pods(EVAL), EVAL)
        benchmarks = list(self.suite.spec.benchmarks)
        if not messages or not isinstance(messages[-1].get("results"), Mapping):
            self.event(
                "Warning",
                "TerminationMessageMissing",
                f"Job {eval_job_name(self.suite.name)} completed without its scores; status.results stays empty",
            )
            return
        scores, average, groups = scores_of(messages[-1], benchmarks)
        status, reason, message = degraded_condition(messages[-1])
        if self.set(c.DEGRADED, status, reason, message) and status == "True":
            self.event("Warning", reason, message)
        self.status.results = scores
        self.status.average = average
        self.status.groups = groups
        self.status.progress = EvalProgress(
            benchmarks_done=len(scores), benchmarks_total=len(benchmarks), percent=100.0 if scores else None
        )


def reconcile_suite(observation: WorkloadObservation, settings: Settings) -> WorkloadPlan:
    return EvalReconciler(observation, settings).run()
