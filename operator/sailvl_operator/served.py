"""What a CurationRun or an EvalSuite should look like next, decided from what was observed: pure.

Both follow one pattern (DESIGN §4): Valid → DependenciesReady (a served model from a stage, an input from another
run) → ModelsReady (every vLLM Deployment has all its replicas available) → Running (a sequence of Jobs) →
Succeeded or Failed, when the models scale to zero. `suspend` deletes the running Job and scales the models to
zero; resuming brings the models back and starts that Job again (the workers skip what is done). A subclass
names its Jobs and reads its results; everything else is here. Nothing reads a clock or the network.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from sailvl.api import ManifestError, Resource, parse_resource
from sailvl.api import conditions as c
from sailvl.api.conditions import derive_phase
from sailvl.api.meta import ResourceStatus
from sailvl_operator.builders.meta import COMPONENT_LABEL, BuildError, vllm_name
from sailvl_operator.builders.serving import (
    Server,
    build_vllm_deployment,
    build_vllm_service,
    model_url,
    servers_of,
)
from sailvl_operator.builders.train import BuildContext
from sailvl_operator.observed import (
    JobState,
    availability,
    deleting,
    failures,
    job_state,
    labels_of,
    name_of,
    pod_problem,
)
from sailvl_operator.reconcile import (
    _REASON,
    Dependency,
    DependencyGate,
    Event,
    Result,
    dependency_phase,
    parse_time,
    rfc3339,
    stage_precision,
)
from sailvl_operator.settings import Settings

PLACEHOLDER = "pvc://sailvl-validation/placeholder"
REASON_MODELS_STOPPED = "ModelsStopped"
REASON_MODELS_NOT_READY = "ModelsNotReady"
REASON_WAITING_FOR_DELETION = "WaitingForDeletion"

R = TypeVar("R", bound=Resource)
S = TypeVar("S", bound=ResourceStatus)
Build = Callable[[Any, BuildContext], dict[str, Any]]


@dataclass(frozen=True)
class WorkloadObservation:
    """The resource and everything it owns, as read from the API (children found by their owner's labels)."""

    body: Mapping[str, Any]
    now: datetime
    dependencies: Sequence[Dependency] = ()
    deployments: Sequence[Mapping[str, Any]] = ()
    services: Sequence[Mapping[str, Any]] = ()
    jobs: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()


@dataclass
class WorkloadPlan:
    status: dict[str, Any]
    result: Result = "ok"
    message: str = ""
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    scale: list[tuple[str, int]] = field(default_factory=list)  # (Deployment, replicas)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """One Job of the sequence."""

    job: str
    component: str  # the pods' sailvl.io/component label
    container: str
    build: Build
    needs_models: bool
    what: str  # how messages name it


class WorkloadReconciler(DependencyGate, Generic[R, S]):
    KIND: ClassVar[type[Resource]]
    STATUS: ClassVar[type[ResourceStatus]]

    def __init__(self, observation: WorkloadObservation, settings: Settings) -> None:
        self.obs = observation
        self.settings = settings
        self.now = rfc3339(observation.now)
        self.generation = (observation.body.get("metadata") or {}).get("generation")
        try:
            status = self.STATUS.model_validate(observation.body.get("status") or {})
        except ValueError:  # edited by hand into something unreadable: start over
            status = self.STATUS()
        self.status: S = status  # type: ignore[assignment]
        self.plan: WorkloadPlan = WorkloadPlan(status={})
        self.resource: R | None = None
        self.deployments = {name_of(d): d for d in observation.deployments}
        self.services = {name_of(s) for s in observation.services}
        self.jobs = {name_of(j): j for j in observation.jobs}
        self._context: BuildContext | None = None

    # -- what a kind defines -------------------------------------------------------------------------------
    @abstractmethod
    def steps(self) -> list[Step]: ...

    @abstractmethod
    def build_all(self, ctx: BuildContext) -> list[dict[str, Any]]:
        """Every child over the resource's life (a dry run validates the spec with it)."""

    @abstractmethod
    def spec_configmap(self, ctx: BuildContext) -> dict[str, Any]: ...

    @abstractmethod
    def succeed(self) -> None:
        """Record the results of the last Job, which completed."""

    @abstractmethod
    def suspend_requested(self) -> bool: ...

    def keep_models(self) -> bool:
        return False

    def step_observed(self, step: Step, state: JobState) -> None:
        """A Job of the sequence is running or done: read what its pods reported."""

    def unobserved(self) -> list[tuple[str, str]]:
        """(status field, key) pairs that hold only a model default, never an observation: left out of status."""
        return []

    # -- the decision --------------------------------------------------------------------------------------
    def run(self) -> WorkloadPlan:
        if self.validate():
            if self.terminal():
                if not self.keep_models():
                    self.stop_models("finished")
            else:
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
            resource = parse_resource(doc)
            assert isinstance(resource, self.KIND)
            self.resource = resource  # type: ignore[assignment]
            valid = self.condition(c.VALID)
            if valid is None or valid.status != "True" or valid.observed_generation != self.generation:
                # A dry build of a new or changed spec catches what only the builders know (a model location
                # the server cannot load, a podTemplate that is not one) before the resource waits for anything.
                refs = resource.references()
                self.build_all(
                    BuildContext(
                        settings=self.settings,
                        model_uris={name: PLACEHOLDER for kind, name in refs if kind == "TrainStage"},
                        data_uris={name: PLACEHOLDER for kind, name in refs if kind == "CurationRun"},
                    )
                )
        except (ManifestError, BuildError) as exc:
            self.resource = None
            message = "; ".join(str(i) for i in exc.issues) if isinstance(exc, ManifestError) else str(exc)
            self.invalid(message)
            return False
        self.set(c.VALID, "True", c.REASON_SPEC_VALID, "the spec is valid")
        return True

    def invalid(self, message: str) -> None:
        if self.set(c.VALID, "False", c.REASON_SPEC_INVALID, message):
            self.event("Warning", c.REASON_SPEC_INVALID, message)
        self.plan.result, self.plan.message = "invalid", message

    def terminal(self) -> bool:
        failed = self.condition(c.FAILED)
        return self.is_true(c.SUCCEEDED) or (
            failed is not None and failed.status == "True" and failed.reason != c.REASON_DEPENDENCY_FAILED
        )

    def converge(self) -> None:
        assert self.resource is not None
        steps = self.steps()
        if self.suspend_requested():
            last = self.jobs.get(steps[-1].job)
            if last is not None and job_state(last).phase == "Succeeded":
                self.step_observed(steps[-1], job_state(last))
                self.finish_successfully()
            else:
                self.suspend(steps)
            return
        self.resume_if_suspended()
        for step in steps:
            job = self.jobs.get(step.job)
            if job is None or deleting(job):
                self.start(step, old=job)
                return
            state = job_state(job)
            self.step_observed(step, state)
            if state.phase == "Failed":
                self.fail_job(step, state)
                return
            if state.phase != "Succeeded":
                self.follow(step, job, state)
                return
        self.finish_successfully()

    def finish_successfully(self) -> None:
        self.succeed()
        done = "completed: " + ", ".join(f"Job {s.job}" for s in self.steps())
        self.set(c.RUNNING, "False", c.REASON_COMPLETED, done)
        self.set(c.SUCCEEDED, "True", c.REASON_COMPLETED, done)
        self.set(c.FAILED, "False", c.REASON_COMPLETED, "")
        self.status.completion_time = self.now
        self.status.start_time = self.status.start_time or self.first_job_start() or self.now
        self.event("Normal", c.REASON_COMPLETED, done)
        if not self.keep_models():
            self.stop_models("finished")

    def start(self, step: Step, *, old: Mapping[str, Any] | None) -> None:
        """Create the Job of `step` once what it needs is there."""
        ctx = self.context()
        if step.needs_models:
            if ctx is None or not self.models_ready(ctx, gate=True):
                return
        elif not self.keep_models():
            self.stop_models(f"not needed by {step.what}")
        if ctx is None:
            return
        if old is not None:  # deleted by a suspend; the name is free once it is gone
            message = f"waiting for the previous Job {step.job} to be deleted"
            self.set(c.RUNNING, "False", REASON_WAITING_FOR_DELETION, message)
            return
        try:
            children = [self.spec_configmap(ctx), step.build(self.resource, ctx)]
        except BuildError as exc:
            self.invalid(str(exc))
            return
        self.plan.create += children
        message = f"Job {step.job} ({step.what}) created; waiting for its pods"
        # Between two Jobs of one run (workers done, finalize starting) the run is still running.
        self.set(c.RUNNING, "True" if self.is_true(c.RUNNING) else "False", c.REASON_JOB_CREATED, message)
        self.event("Normal", c.REASON_JOB_CREATED, message)

    def follow(self, step: Step, job: Mapping[str, Any], state: JobState) -> None:
        if step.needs_models:
            self.models_ready(self.context(), gate=False)
        elif not self.keep_models():
            self.stop_models(f"not needed by {step.what}")
        if state.phase == "Running":
            if self.set(c.RUNNING, "True", c.REASON_JOB_RUNNING, self.running_message(step, job, state)):
                self.event("Normal", c.REASON_JOB_RUNNING, f"Job {step.job} ({step.what}) is running")
            self.status.start_time = self.status.start_time or self.first_job_start() or self.now
        elif state.phase == "Queued":
            self.set(c.RUNNING, "False", c.REASON_QUEUED, f"Job {step.job} is waiting for admission")
        elif not self.is_true(c.RUNNING):
            self.set(c.RUNNING, "False", c.REASON_JOB_CREATED, f"Job {step.job} ({step.what}) is waiting for its pods")

    def first_job_start(self) -> str | None:
        """The earliest `status.startTime` the Job controller wrote on this resource's Jobs."""
        starts = [str(t) for j in self.jobs.values() if (t := (j.get("status") or {}).get("startTime"))]
        return min(starts) if starts else None

    def running_message(self, step: Step, job: Mapping[str, Any], state: JobState) -> str:
        completions = int((job.get("spec") or {}).get("completions") or 1)
        if completions == 1:
            return f"Job {step.job} ({step.what}) is running"
        return f"Job {step.job}: {state.succeeded} of {completions} {step.what} done, {state.active} running"

    def fail_job(self, step: Step, state: JobState) -> None:
        failed = failures(self.pods(step.component), step.container)
        detail = f"; {failed[0][1]}" if failed else ""
        what = f"Job {step.job} ({step.what}) failed: {state.reason}" + (f": {state.message}" if state.message else "")
        if any(code == 2 for code, _ in failed):
            self.fail(c.REASON_SPEC_REJECTED, f"{what}; the {step.what} refused the spec (exit code 2){detail}")
        else:
            self.fail(state.reason, what + detail)

    def fail(self, reason: str, message: str) -> None:
        self.set(c.RUNNING, "False", c.REASON_JOB_FAILED, message)
        self.set(c.FAILED, "True", reason, message)
        self.status.completion_time = self.now
        self.event("Warning", reason if _REASON.match(reason) else c.REASON_JOB_FAILED, message)
        if not self.keep_models():
            self.stop_models("finished")

    # -- dependencies --------------------------------------------------------------------------------------
    def context(self) -> BuildContext | None:
        """What the builders need from the cluster, once every dependency has Succeeded (else None)."""
        if self._context is None and self.dependencies_ready():
            outputs = {(d.kind, d.name): dependency_phase(d)[1] for d in self.obs.dependencies}
            self._context = BuildContext(
                settings=self.settings,
                model_uris={name: str(uri) for (kind, name), uri in outputs.items() if kind == "TrainStage"},
                model_precisions={
                    d.name: stage_precision(d.body) for d in self.obs.dependencies if d.kind == "TrainStage" and d.body
                },
                data_uris={name: str(uri) for (kind, name), uri in outputs.items() if kind == "CurationRun"},
            )
        return self._context

    # -- models --------------------------------------------------------------------------------------------
    def pods(self, component: str) -> list[Mapping[str, Any]]:
        return [p for p in self.obs.pods if labels_of(p).get(COMPONENT_LABEL) == component]

    def models_ready(self, ctx: BuildContext | None, *, gate: bool) -> bool:
        """Bring every model up (creating what is missing when `ctx` allows) and report whether all are available.
        With `gate` (nothing runs yet), models not ready within the timeout fail the resource."""
        assert self.resource is not None
        servers = servers_of(self.resource)
        if not servers:
            return True  # rules only: nothing to serve, and no ModelsReady to report
        missing = [s for s in servers if vllm_name(self.resource.name, s.slot) not in self.deployments]
        if ctx is not None and not self.create_servers(servers, ctx):
            return False
        notes, ready = [], True
        for server in servers:
            name = vllm_name(self.resource.name, server.slot)
            deployment = self.deployments.get(name)
            if deployment is None:
                ready = False
                notes.append(
                    f"{server.slot}: Deployment {name} " + ("created" if ctx is not None else "not created yet")
                )
                continue
            seen = availability(deployment)
            if seen.desired != server.runtime.replicas:
                self.plan.scale.append((name, server.runtime.replicas))
            ready = ready and seen.ready and seen.desired == server.runtime.replicas
            notes.append(f"{server.slot}: {seen.available} of {server.runtime.replicas} replicas available")
        if ready:
            urls = ", ".join(f"{s.slot} at {model_url(self.resource, s.slot)}" for s in servers)
            if self.set(c.MODELS_READY, "True", c.REASON_MODELS_AVAILABLE, f"every replica is available: {urls}"):
                self.event("Normal", c.REASON_MODELS_AVAILABLE, f"models available: {urls}")
            return True
        problem = pod_problem(self.pods("vllm"))
        if problem:
            reason, message = problem[0], f"{'; '.join(notes)}; {problem[1]}"
        else:
            reason, message = c.REASON_MODELS_STARTING, "; ".join(notes)
        changed = self.set(c.MODELS_READY, "False", reason, message)
        if missing and ctx is not None:
            self.event("Normal", c.REASON_MODELS_STARTING, f"starting {', '.join(s.slot for s in missing)}")
        elif problem and changed:
            self.event("Warning", reason, message)
        if gate:
            self.check_models_timeout(message)
        return False

    def create_servers(self, servers: list[Server], ctx: BuildContext) -> bool:
        """Plan the Deployments and Services that do not exist; False if the spec cannot be built."""
        assert self.resource is not None
        for server in servers:
            name = vllm_name(self.resource.name, server.slot)
            try:
                if name not in self.deployments:
                    self.plan.create.append(build_vllm_deployment(server, self.resource, ctx))
                if name not in self.services:
                    self.plan.create.append(build_vllm_service(server, self.resource, ctx))
            except BuildError as exc:
                self.invalid(str(exc))
                return False
        return True

    def check_models_timeout(self, message: str) -> None:
        models = self.condition(c.MODELS_READY)
        assert models is not None
        since = parse_time(models.last_transition_time)
        resumed = self.condition(c.SUSPENDED)
        if resumed is not None and resumed.status == "False":
            since = max(since, parse_time(resumed.last_transition_time))
        waited = (self.obs.now - since).total_seconds()
        limit = self.settings.models_ready_timeout
        if waited > limit:
            self.fail(REASON_MODELS_NOT_READY, f"the models were not ready within {limit:g}s: {message}")
        else:
            self.plan.result, self.plan.message = "waiting", message

    def stop_models(self, why: str) -> None:
        """Scale every model to zero (the GPUs go back); the Deployments stay for a resume or a look."""
        scaled = [name for name, d in sorted(self.deployments.items()) if availability(d).desired > 0]
        self.plan.scale += [(name, 0) for name in scaled]
        if scaled or (self.deployments and self.is_true(c.MODELS_READY)):
            message = f"scaled to zero: {why}"
            if self.set(c.MODELS_READY, "False", REASON_MODELS_STOPPED, message) and scaled:
                self.event("Normal", REASON_MODELS_STOPPED, f"{', '.join(scaled)} {message}")

    # -- suspend -------------------------------------------------------------------------------------------
    def suspend(self, steps: list[Step]) -> None:
        for step in steps:
            job = self.jobs.get(step.job)
            if job is not None and not deleting(job) and job_state(job).phase not in ("Succeeded", "Failed"):
                self.plan.delete.append(("Job", step.job))
        message = "suspended: the running Job is deleted and the models scaled to zero; set suspend: false to resume"
        if self.set(c.SUSPENDED, "True", c.REASON_SUSPENDED, message):
            self.event("Normal", c.REASON_SUSPENDED, message)
        self.set(c.RUNNING, "False", c.REASON_SUSPENDED, message)
        self.stop_models("suspended")

    def resume_if_suspended(self) -> None:
        if self.is_true(c.SUSPENDED):
            message = "resumed: the models come back, then the Job starts again and skips what is done"
            self.set(c.SUSPENDED, "False", c.REASON_RESUMED, message)
            self.event("Normal", c.REASON_RESUMED, message)

    # -- the status ----------------------------------------------------------------------------------------
    def finish(self) -> WorkloadPlan:
        self.status.phase = derive_phase(self.status.conditions)
        self.status.observed_generation = self.generation
        self.status.message = self.headline()
        self.plan.status = self.status.to_manifest()
        for section, key in self.unobserved():
            if isinstance(self.plan.status.get(section), dict):
                self.plan.status[section].pop(key, None)
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
        running, models = self.condition(c.RUNNING), self.condition(c.MODELS_READY)
        if running is not None and running.status == "True":
            return running.message
        if models is not None and models.status != "True" and models.reason != REASON_MODELS_STOPPED:
            return models.message
        return running.message if running is not None else models.message if models is not None else None
