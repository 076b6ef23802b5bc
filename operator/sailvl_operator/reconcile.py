"""What a TrainStage should look like next, decided from what was observed: a pure function.

`reconcile(observation, settings)` compares the stage, its dependencies and its current job with what should
exist and returns a `Plan`: the new status, the children to create or delete and the Events to post. The
handlers only observe and apply (STYLE 1, 2). Nothing here reads a clock or the network.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sailvl.api import ManifestError, TrainStage, parse_resource
from sailvl.api import conditions as c
from sailvl.api.conditions import Condition, ConditionStatus, derive_phase, find_condition, set_condition
from sailvl.api.trainstage import (
    CheckpointStatus,
    JobRef,
    ResolvedInputs,
    TrainProgress,
    TrainStageSpec,
    TrainStageStatus,
)
from sailvl_operator.builders import BuildContext, BuildError, build_stage_children, build_train_job, resolve
from sailvl_operator.builders.meta import RETRY_ANNOTATION
from sailvl_operator.jobs import (
    EXIT_INVALID_SPEC,
    EXIT_LOSS_NOT_FINITE,
    JobState,
    conditions_for,
    created_message,
    exit_codes,
    is_rank0,
    job_state,
    termination_message,
)
from sailvl_operator.progress import progress_since
from sailvl_operator.settings import Settings

Result = Literal["ok", "waiting", "blocked", "invalid"]
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_PLACEHOLDER = "s3://sailvl-validation/placeholder"


@dataclass(frozen=True)
class Dependency:
    """A resource the stage waits for, as read from the API (`body` None: it does not exist)."""

    kind: str
    name: str
    body: Mapping[str, Any] | None


@dataclass(frozen=True)
class Observation:
    body: Mapping[str, Any]
    now: datetime
    dependencies: Sequence[Dependency] = ()
    job: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    status: dict[str, Any]
    result: Result = "ok"
    message: str = ""
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) of jobs
    events: list[Event] = field(default_factory=list)
    restarted: bool = False


def rfc3339(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def current_status(body: Mapping[str, Any]) -> TrainStageStatus:
    """The stage's status as typed data; an unreadable status (edited by hand) starts over."""
    try:
        return TrainStageStatus.model_validate(body.get("status") or {})
    except ValueError:
        return TrainStageStatus()


def retry_token(body: Mapping[str, Any]) -> str | None:
    token = ((body.get("metadata") or {}).get("annotations") or {}).get(RETRY_ANNOTATION)
    if token is None:
        return None
    return token if len(token) <= 200 else "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def dependency_phase(dep: Dependency) -> tuple[str, str | None, str]:
    """(phase, output URI, message) of a dependency; phase "Missing" when it does not exist."""
    if dep.body is None:
        return "Missing", None, f"{dep.kind}/{dep.name} does not exist yet"
    status = dep.body.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    output = (status.get("checkpoint") or {}).get("final") if dep.kind == "TrainStage" else None
    if dep.kind == "CurationRun":
        output = (status.get("output") or {}).get("uri")
    detail = f": {status['message']}" if status.get("message") else ""
    return phase, output, f"{dep.kind}/{dep.name} is {phase}{detail}"


def stage_precision(body: Mapping[str, Any]) -> str:
    """A TrainStage's `precision` (the API server applies its default, so a stored stage always has one)."""
    precision = (body.get("spec") or {}).get("precision", TrainStageSpec.model_fields["precision"].default)
    return str(precision)


def reconcile(observation: Observation, settings: Settings) -> Plan:
    return _Reconciler(observation, settings).run()


class ConditionKeeper:
    """The status conditions and Events every reconciler keeps: set with transition detection, read, announce.
    Subclasses hold `status` (with `.conditions`), `generation`, `now` and `plan` (with `.events`)."""

    status: Any
    generation: int | None
    now: str
    plan: Any

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.status.conditions, type_)

    def is_true(self, type_: str) -> bool:
        found = self.condition(type_)
        return found is not None and found.status == "True"

    def set(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> bool:
        """Set a condition; True when its status or reason changed (a transition worth an Event)."""
        before = self.condition(type_)
        reason = reason if _REASON.match(reason) else c.REASON_JOB_FAILED
        self.status.conditions = set_condition(
            self.status.conditions, type_, status, reason, message, generation=self.generation, now=self.now
        )
        return before is None or (before.status, before.reason) != (status, reason)

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))


class DependencyGate(ConditionKeeper):
    """What every reconciler does with the resources it refers to: wait for them, fail when one failed, and clear
    that failure when the dependency is retried. Subclasses keep the status and the plan."""

    obs: Any  # an observation with `.dependencies`

    def dependencies_ready(self) -> bool:
        waiting, failed = [], []
        for dep in self.obs.dependencies:
            phase, output, message = dependency_phase(dep)
            if phase == "Failed":
                failed.append(message)
            elif phase != "Succeeded" or not output:
                reason = c.REASON_WAITING_FOR_STAGE if dep.kind == "TrainStage" else c.REASON_WAITING_FOR_CURATION
                waiting.append((reason, message if output or phase != "Succeeded" else f"{message} (no output yet)"))
        if failed:
            message = "; ".join(failed)
            self.set(c.DEPENDENCIES_READY, "False", c.REASON_DEPENDENCY_FAILED, message)
            if self.set(c.FAILED, "True", c.REASON_DEPENDENCY_FAILED, f"a dependency failed: {message}"):
                self.event("Warning", c.REASON_DEPENDENCY_FAILED, message)
            self.plan.result, self.plan.message = "blocked", message
            return False
        if self.is_true(c.FAILED):  # a dependency that had failed was retried: wait for it again
            self.set(c.FAILED, "False", c.REASON_DEPENDENCIES_SUCCEEDED, "no dependency has failed")
        if waiting:
            reason, message = waiting[0][0], "; ".join(m for _, m in waiting)
            self.set(c.DEPENDENCIES_READY, "False", reason, message)
            self.plan.result, self.plan.message = "waiting", message
            return False
        names = ", ".join(f"{d.kind}/{d.name}" for d in self.obs.dependencies) or "none"
        self.set(c.DEPENDENCIES_READY, "True", c.REASON_DEPENDENCIES_SUCCEEDED, f"dependencies succeeded: {names}")
        return True


class _Reconciler(DependencyGate):
    def __init__(self, observation: Observation, settings: Settings) -> None:
        self.obs = observation
        self.settings = settings
        self.now = rfc3339(observation.now)
        self.generation = (observation.body.get("metadata") or {}).get("generation")
        self.status = current_status(observation.body)
        self.plan: Plan = Plan(status={})
        self.stage: TrainStage | None = None

    # -- the decision -------------------------------------------------------------------------------------
    def run(self) -> Plan:
        if self.validate():
            self.retry_on_new_token()
            if not self.terminal():
                self.converge()
        return self.finish()

    def validate(self) -> bool:
        body = self.obs.body
        meta = body.get("metadata") or {}
        doc = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
            "spec": body.get("spec"),
        }
        try:
            stage = parse_resource(doc)
            assert isinstance(stage, TrainStage)
            valid = self.condition(c.VALID)
            if valid is None or valid.status != "True" or valid.observed_generation != self.generation:
                # A dry build of a new or changed spec catches what only the builders know (e.g. podTemplate
                # fields a TrainJob cannot carry) before the stage waits for anything.
                runs = {e.source.curation_run: _PLACEHOLDER for e in stage.spec.data.mixture if e.source.curation_run}
                build_train_job(stage, BuildContext(settings=self.settings, init_uri=_PLACEHOLDER, data_uris=runs))
        except (ManifestError, BuildError) as exc:
            message = "; ".join(str(i) for i in exc.issues) if isinstance(exc, ManifestError) else str(exc)
            self.invalid(message)
            return False
        self.stage = stage
        self.set(c.VALID, "True", c.REASON_SPEC_VALID, "the spec is valid")
        return True

    def invalid(self, message: str) -> None:
        if self.set(c.VALID, "False", c.REASON_SPEC_INVALID, message):
            self.event("Warning", c.REASON_SPEC_INVALID, message)
        self.plan.result, self.plan.message = "invalid", message

    def retry_on_new_token(self) -> None:
        token = retry_token(self.obs.body)
        if token is None or token == self.status.retry_token:
            return
        first_sight = self.status.retry_token is None and not self.is_true(c.FAILED)
        self.status.retry_token = token
        failed = self.condition(c.FAILED)
        if first_sight or failed is None or failed.status != "True" or failed.reason == c.REASON_DEPENDENCY_FAILED:
            return
        message = f"retry requested ({RETRY_ANNOTATION}: {token}); starting a new attempt from the latest checkpoint"
        self.set(c.FAILED, "False", c.REASON_RETRY_REQUESTED, message)
        self.status.restarts = 0
        self.status.completion_time = None
        self.event("Normal", c.REASON_RETRY_REQUESTED, message)
        if self.status.job is not None:
            self.start_attempt(self.status.job.attempt + 1, c.REASON_RETRY_REQUESTED, message)

    def terminal(self) -> bool:
        failed = self.condition(c.FAILED)
        return self.is_true(c.SUCCEEDED) or (
            failed is not None and failed.status == "True" and failed.reason != c.REASON_DEPENDENCY_FAILED
        )

    def converge(self) -> None:
        assert self.stage is not None
        job, state = self.obs.job, (job_state(self.obs.job) if self.obs.job is not None else None)
        if self.stage.spec.suspend:
            if state is not None and state.phase == "Succeeded":
                self.succeed(state)
            else:
                self.suspend()
            return
        resuming = self.is_true(c.SUSPENDED)
        if resuming:
            message = "resumed; a new attempt continues from the latest checkpoint"
            self.set(c.SUSPENDED, "False", c.REASON_RESUMED, message)
            self.event("Normal", c.REASON_RESUMED, message)
        if self.status.job is None:
            if self.dependencies_ready():
                self.start_attempt(0, c.REASON_JOB_CREATED, "")
            return
        if self.plan.create:  # a retry already started the next attempt
            return
        if resuming or job is None:
            if job is not None and not (job.get("metadata") or {}).get("deletionTimestamp"):
                self.plan.delete.append((self.status.job.kind, self.status.job.name))
            attempt = self.status.job.attempt + (1 if resuming else 0)
            self.start_attempt(attempt, c.REASON_RESUMED if resuming else c.REASON_JOB_CREATED, "")
            return
        assert state is not None
        if state.phase == "Succeeded":
            self.succeed(state)
        elif state.phase == "Failed":
            self.fail_or_restart(state.reason, state.message, exit_codes(self.obs.pods))
        else:
            self.follow(state)

    def context(self, attempt: int) -> BuildContext:
        assert self.stage is not None
        resolved = self.status.resolved
        init_uri = resolved.init if resolved is not None else None
        data_uris: dict[str, str] = {}
        if resolved is None:  # the first attempt: take the dependencies' outputs
            outputs = {(d.kind, d.name): dependency_phase(d)[1] for d in self.obs.dependencies}
            ref = self.stage.spec.model.init
            if ref is not None and ref.stage is not None:
                init_uri = outputs.get(("TrainStage", ref.stage))
            for entry in self.stage.spec.data.mixture:
                run = entry.source.curation_run
                if run is not None and outputs.get(("CurationRun", run)):
                    data_uris[run] = str(outputs[("CurationRun", run)])
        else:  # later attempts use exactly the inputs the first one resolved (the lineage)
            for entry in self.stage.spec.data.mixture:
                if entry.source.curation_run is not None and entry.name in resolved.data:
                    data_uris[entry.source.curation_run] = resolved.data[entry.name]
        token = self.status.retry_token
        annotations = {RETRY_ANNOTATION: token} if token else {}
        return BuildContext(
            settings=self.settings, attempt=attempt, init_uri=init_uri, data_uris=data_uris, annotations=annotations
        )

    def start_attempt(self, attempt: int, reason: str, message: str) -> None:
        assert self.stage is not None
        ctx = self.context(attempt)
        try:
            children = build_stage_children(self.stage, ctx)
        except BuildError as exc:
            self.invalid(str(exc))
            return
        job = children[-1]
        if self.status.resolved is None:
            resolved = resolve(self.stage, ctx)
            self.status.resolved = ResolvedInputs(init=resolved.init, data=resolved.data)
        self.plan.create = children
        self.status.job = JobRef(kind=job["kind"], name=job["metadata"]["name"], attempt=attempt)
        self.status.progress = None if attempt == 0 else self.status.progress
        if reason == c.REASON_RESTARTING:
            self.set(c.RUNNING, "False", c.REASON_RESTARTING, message)
        else:
            self.set(c.RUNNING, "False", c.REASON_JOB_CREATED, created_message(job["kind"], job["metadata"]["name"]))
            self.event(
                "Normal", c.REASON_JOB_CREATED, f"{job['kind']} {job['metadata']['name']} created (attempt {attempt})"
            )

    def follow(self, state: JobState) -> None:
        assert self.stage is not None and self.obs.job is not None
        for change in conditions_for(self.obs.job):
            running = self.condition(c.RUNNING)
            keep = change.type == c.RUNNING and running is not None and running.status == change.status == "True"
            if not keep and self.set(*change) and change.reason in (c.REASON_JOB_RUNNING, c.REASON_QUEUED):
                self.event("Normal", change.reason, change.message)
        if state.phase == "Running" and self.status.start_time is None:
            self.status.start_time = self.now
        deadline = self.stage.spec.progress_deadline_seconds
        running = self.condition(c.RUNNING)
        if deadline is None or running is None or running.status != "True":
            return
        progress = self.status.progress
        since = progress_since(running.last_transition_time, progress.last_advance_time if progress else None)
        stalled = (self.obs.now - since).total_seconds()
        if stalled > deadline:
            assert self.status.job is not None
            self.plan.delete.append((self.status.job.kind, self.status.job.name))
            message = f"the step has not advanced for {int(stalled)}s (progressDeadlineSeconds {deadline})"
            self.fail_or_restart(c.REASON_PROGRESS_DEADLINE_EXCEEDED, message, [])

    def fail_or_restart(self, reason: str, message: str, codes: list[int]) -> None:
        assert self.stage is not None and self.status.job is not None
        attempt, limit = self.status.job.attempt, self.stage.spec.max_restarts
        what = f"attempt {attempt} ({self.status.job.kind} {self.status.job.name}) failed"
        detail = f"{what}: {reason}" + (f": {message}" if message else "")
        if EXIT_LOSS_NOT_FINITE in codes:
            self.fail(c.REASON_LOSS_NOT_FINITE, f"{what}: the loss is not finite (trainer exit code 3); not restarted")
        elif EXIT_INVALID_SPEC in codes:
            self.fail(c.REASON_SPEC_REJECTED, f"{what}: the trainer refused its spec (exit code 2); not restarted")
        elif self.status.restarts < limit:
            self.status.restarts += 1
            restart = (
                f"{detail}; restarting the whole gang from the latest checkpoint as attempt {attempt + 1} "
                f"(restart {self.status.restarts} of {limit})"
            )
            self.start_attempt(attempt + 1, c.REASON_RESTARTING, restart)
            self.event("Warning", c.REASON_RESTARTING, restart)
            self.plan.restarted = True
        else:
            self.fail(reason, f"{detail} (restarts exhausted: {self.status.restarts} of maxRestarts {limit})")

    def fail(self, reason: str, message: str) -> None:
        self.set(c.RUNNING, "False", c.REASON_JOB_FAILED, message)
        self.set(c.FAILED, "True", reason, message)
        self.status.completion_time = self.now
        self.event("Warning", reason if _REASON.match(reason) else c.REASON_JOB_FAILED, message)

    def succeed(self, state: JobState) -> None:
        assert self.stage is not None and self.status.job is not None
        kind = self.status.job.kind
        result = next((termination_message(p) for p in self.obs.pods if is_rank0(p, kind)), None)
        claims = resolve(self.stage, self.context(self.status.job.attempt)).claims
        final = self.stage.spec.checkpoint.uri.rstrip("/") + "/final"
        if result is not None and isinstance(result.get("checkpoint"), str):
            final = claims.uri(result["checkpoint"])
        else:
            self.event("Warning", "TerminationMessageMissing", f"rank 0 left no result; assuming {final}")
        progress = self.status.progress or TrainProgress()
        updates: dict[str, Any] = {"eta": None, "percent": 100.0}
        if result is not None:
            for key, field_name in (("steps", "step"), ("tokens", "tokens"), ("loss", "loss")):
                if isinstance(result.get(key), int | float) and not isinstance(result.get(key), bool):
                    updates[field_name] = int(result[key]) if field_name != "loss" else float(result[key])
        self.status.progress = progress.model_copy(update=updates)
        self.status.checkpoint = (self.status.checkpoint or CheckpointStatus()).model_copy(update={"final": final})
        for change in conditions_for(self.obs.job or {}):
            self.set(*change)
        self.set(c.FAILED, "False", c.REASON_COMPLETED, "")
        self.status.completion_time = self.now
        self.status.start_time = self.status.start_time or state.since or self.now
        self.event("Normal", c.REASON_COMPLETED, f"{kind} {self.status.job.name} completed; final checkpoint {final}")

    def suspend(self) -> None:
        job = self.obs.job
        if self.status.job is not None and job is not None and not (job.get("metadata") or {}).get("deletionTimestamp"):
            self.plan.delete.append((self.status.job.kind, self.status.job.name))
        message = "suspended: the job is deleted, the checkpoints are kept; set suspend: false to resume"
        if self.set(c.SUSPENDED, "True", c.REASON_SUSPENDED, message):
            self.event("Normal", c.REASON_SUSPENDED, message)
        self.set(c.RUNNING, "False", c.REASON_SUSPENDED, message)

    def finish(self) -> Plan:
        running = self.condition(c.RUNNING)
        restarting = running is not None and running.reason == c.REASON_RESTARTING
        self.status.phase = derive_phase(self.status.conditions, restarts_pending=restarting)
        self.status.observed_generation = self.generation
        self.status.message = self.headline()
        self.plan.status = self.status.to_manifest()
        return self.plan

    def headline(self) -> str | None:
        for type_ in (c.FAILED, c.SUCCEEDED, c.SUSPENDED):
            found = self.condition(type_)
            if found is not None and found.status == "True":
                return found.message
        for type_ in (c.VALID, c.DEPENDENCIES_READY):
            found = self.condition(type_)
            if found is not None and found.status != "True":
                return found.message
        running = self.condition(c.RUNNING)
        return running.message if running is not None else None
