"""An EvalSuite on this machine: the model under test (and a judge) served, then `sailvl eval`."""

from __future__ import annotations

from pathlib import Path

from sailvl.api import conditions as c
from sailvl.api.evalsuite import EvalProgress, EvalSuite, EvalSuiteStatus, GroupScores, degraded_condition
from sailvl.api.meta import Resource
from sailvl.local.base import Failure, ResourceRun
from sailvl.local.procs import SAILVL, free_port
from sailvl.local.scrape import scrape
from sailvl.local.serving import Server, start_servers


class EvalRun(ResourceRun):
    async def execute(self, resolved: Resource) -> None:
        assert isinstance(resolved, EvalSuite) and isinstance(self.status, EvalSuiteStatus)
        spec = resolved.spec
        assert spec.model.uri is not None, "references are resolved before a run"
        # The model under test is served as `model` (DESIGN §4: SAILVL_MODEL_URL_MODEL); the judge under its own name.
        servers = [Server("model", "model", spec.model.uri, spec.serving, tiles=spec.most_tiles())]
        if spec.judge is not None:
            assert spec.judge.model.uri is not None
            servers.append(Server("judge", spec.judge.name, spec.judge.model.uri, spec.judge))
        env = await start_servers(self, servers)
        port = free_port()
        self.local.endpoints["metrics"] = f"http://127.0.0.1:{port}/metrics"
        termination = self.state.folder / "termination-eval.json"
        termination.unlink(missing_ok=True)
        self.condition(c.RUNNING, "True", c.REASON_JOB_RUNNING, f"{len(spec.benchmarks)} benchmark(s)")
        # A suite without an output keeps its predictions, score files and results.json in the workdir anyway.
        output = [] if spec.output is not None else ["--output", str(self.results_folder)]
        child = await self.start(
            "eval",
            [*SAILVL, "eval", "--spec", str(self.spec_file), *output],
            **env,
            SAILVL_METRICS_PORT=str(port),
            SAILVL_TERMINATION_LOG=str(termination),
        )
        code = await self.wait(child, poll=lambda: self.poll(port))
        if code != 0:
            reason = c.REASON_SPEC_INVALID if code == 2 else c.REASON_JOB_FAILED
            raise Failure(reason, f"sailvl eval exited {code}:\n{child.tail()}")
        message = self.termination(termination)
        if "results" not in message:
            raise Failure(c.REASON_JOB_FAILED, "sailvl eval exited 0 but wrote no results in its termination message")
        self.condition(c.DEGRADED, *degraded_condition(message))
        self.local.outputs["results"] = str(spec.output.uri if spec.output is not None else self.results_folder)
        self.status.results = {str(k): float(v) for k, v in message["results"].items()}
        self.status.average = float(message["average"]) if message.get("average") is not None else None
        self.status.groups = GroupScores.model_validate(message.get("groups") or {}, strict=False)
        done = len(self.status.results)
        self.status.progress = EvalProgress(benchmarks_done=done, benchmarks_total=len(spec.benchmarks), percent=100.0)
        if self.status.average is not None:
            self.live.figure = f"average {self.status.average:.1f}"

    @property
    def results_folder(self) -> Path:
        """Where a suite without `output` keeps its results files: `<workdir>/evalsuite/<name>/results/`."""
        return self.state.folder / "results"

    async def poll(self, port: int) -> None:
        assert self.ctx.session is not None
        values = await scrape(f"http://127.0.0.1:{port}/metrics", self.ctx.session)
        self.live.done = values.get("sailvl_eval_items_total", self.live.done)
