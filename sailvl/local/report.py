"""`sailvl report`: what a local run showed, as PNG plots, Markdown, HTML and the numbers behind the claims.

Plots: every stage's loss on one wall-clock axis, the evaluation scores per suite (per benchmark and per group),
and the curation funnel (in → kept, dropped and rejected by reason). `claims.json` holds the figures behind the
two claims the quickstart demonstrates, read from labels on the EvalSuites:

- `report.sailvl.io/branch: curated` / `raw` on two suites at the same point of the recipe:
  `curated_beats_raw` is true when the curated branch scores higher on `shapes_caption`;
- `report.sailvl.io/curriculum: "<n>"` on suites along the curriculum: `average_rises` is true when the average
  of the last one is above that of the first.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sailvl.api.curationrun import CurationRunStatus
from sailvl.api.evalsuite import EvalSuiteStatus
from sailvl.api.trainstage import TrainStageStatus
from sailvl.local.state import State, all_states

BRANCH_LABEL = "report.sailvl.io/branch"
CURRICULUM_LABEL = "report.sailvl.io/curriculum"
CAPTION_BENCHMARK = "shapes_caption"


class ReportError(ValueError):
    pass


@dataclass
class Suite:
    name: str
    labels: dict[str, str]
    status: EvalSuiteStatus
    results: Path | None = None  # its results folder: predictions, score files, results.json


def _labels(state: State) -> dict[str, str]:
    spec = state.folder / "spec.json"
    if not spec.exists():
        return {}
    labels = json.loads(spec.read_text()).get("metadata", {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def claims(suites: list[Suite]) -> dict[str, Any]:
    """The numbers behind the two claims; a claim whose suites are missing or unscored is null, never guessed."""
    out: dict[str, Any] = {"curated_beats_raw": None, "average_rises": None}
    scored = [s for s in suites if s.status.results]
    curated = [s for s in scored if s.labels.get(BRANCH_LABEL) == "curated"]
    raw = [s for s in scored if s.labels.get(BRANCH_LABEL) == "raw"]
    if (
        curated
        and raw
        and CAPTION_BENCHMARK in curated[0].status.results
        and CAPTION_BENCHMARK in raw[0].status.results
    ):
        a, b = curated[0].status.results[CAPTION_BENCHMARK], raw[0].status.results[CAPTION_BENCHMARK]
        out["caption"] = {"curated": {"suite": curated[0].name, "score": a}, "raw": {"suite": raw[0].name, "score": b}}
        out["curated_beats_raw"] = a > b
    steps = sorted((int(s.labels[CURRICULUM_LABEL]), s) for s in scored if s.labels.get(CURRICULUM_LABEL, "").isdigit())
    if len(steps) >= 2 and all(s.status.average is not None for _, s in steps):
        out["curriculum"] = [{"suite": s.name, "position": n, "average": s.status.average} for n, s in steps]
        first, last = steps[0][1].status.average, steps[-1][1].status.average
        assert first is not None and last is not None
        out["average_rises"] = last > first
    return out


def write_report(workdir: Path) -> Path:
    """Write `<workdir>/report/` and return the HTML page's path."""
    states = all_states(workdir)
    if not states:
        raise ReportError(f"no resources under {workdir}: run `sailvl run` first")
    out = workdir / "report"
    out.mkdir(parents=True, exist_ok=True)
    stages, suites, runs = [], [], []
    for state in states:
        status, local = state.load()
        if isinstance(status, TrainStageStatus):
            stages.append((state, status, local.seconds))
        elif isinstance(status, EvalSuiteStatus):
            folder = local.outputs.get("results")
            suites.append(Suite(state.name, _labels(state), status, Path(folder) if folder else None))
        elif isinstance(status, CurationRunStatus):
            runs.append((state.name, status))
    figures = {
        "loss.png": _plot_losses(out / "loss.png", stages),
        "scores.png": _plot_scores(out / "scores.png", suites),
        "groups.png": _plot_groups(out / "groups.png", suites),
        "funnel.png": _plot_funnel(out / "funnel.png", runs),
    }
    result = claims(suites)
    (out / "claims.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = _markdown(stages, suites, runs, result, [name for name, made in figures.items() if made], out)
    (out / "report.md").write_text(markdown)
    page = out / "index.html"
    page.write_text(_html(markdown, [name for name, made in figures.items() if made]))
    return page


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _plot_losses(path: Path, stages: list[tuple[State, TrainStageStatus, float | None]]) -> bool:
    curves = []
    for state, _, _ in stages:
        log = state.folder / "progress.jsonl"
        if log.exists():
            points = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            points = [p for p in points if p.get("loss") is not None and p.get("step", 0) > 0]
            if points:
                curves.append((state.name, points))
    if not curves:
        return False
    plt = _pyplot()
    start = min(p["time"] for _, points in curves for p in points)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, points in sorted(curves, key=lambda c: c[1][0]["time"]):
        ax.plot([(p["time"] - start) / 60 for p in points], [p["loss"] for p in points], label=name)
    ax.set(xlabel="minutes since the run started", ylabel="training loss", title="Loss of every stage")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_scores(path: Path, suites: list[Suite]) -> bool:
    scored = [s for s in suites if s.status.results]
    if not scored:
        return False
    plt = _pyplot()
    benchmarks = sorted({b for s in scored for b in s.status.results})
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(scored)
    for i, suite in enumerate(scored):
        xs = [k + i * width for k in range(len(benchmarks))]
        ax.bar(xs, [suite.status.results.get(b, 0.0) for b in benchmarks], width, label=suite.name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(benchmarks))], benchmarks, rotation=20, fontsize=8)
    ax.set(ylabel="score (0-100)", title="Evaluation scores per suite")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_groups(path: Path, suites: list[Suite]) -> bool:
    rows = [(s.name, s.status.average) for s in suites if s.status.average is not None]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh([name for name, _ in rows], [value for _, value in rows])
    ax.set(xlabel="average score", title="Average per suite")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_funnel(path: Path, runs: list[tuple[str, CurationRunStatus]]) -> bool:
    finished = [(name, s.progress) for name, s in runs if s.progress is not None and s.progress.samples_in]
    if not finished:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(finished), figsize=(6 * len(finished), 3.5), squeeze=False)
    for ax, (name, progress) in zip(axes[0], finished, strict=True):
        bars = {"in": progress.samples_in, "kept": progress.samples_out}
        bars |= {f"dropped: {k}": v for k, v in progress.dropped.items()}
        bars |= {f"rejected: {k}": v for k, v in progress.rejected.items()}
        ax.barh(list(bars)[::-1], list(bars.values())[::-1])
        ax.set(title=f"Curation funnel: {name}", xlabel="records")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _markdown(
    stages: list[tuple[State, TrainStageStatus, float | None]],
    suites: list[Suite],
    runs: list[tuple[str, CurationRunStatus]],
    result: dict[str, Any],
    figures: list[str],
    out: Path,
) -> str:
    lines = ["# sailvl run report", "", "## Claims", ""]
    lines.append(f"- curated captions beat raw alt text on {CAPTION_BENCHMARK}: **{result['curated_beats_raw']}**")
    if "caption" in result:
        curated, raw = result["caption"]["curated"], result["caption"]["raw"]
        lines.append(f"  ({curated['suite']}: {curated['score']:.1f} vs {raw['suite']}: {raw['score']:.1f})")
    lines.append(f"- the average rises along the curriculum: **{result['average_rises']}**")
    for point in result.get("curriculum", []):
        lines.append(f"  - {point['suite']}: {point['average']:.1f}")
    lines += ["", "## Stages", "", "| stage | phase | steps | final loss | seconds | init |"]
    lines.append("|---|---|---|---|---|---|")
    for state, stage, seconds in stages:
        progress = stage.progress
        loss = f"{progress.loss:.4f}" if progress and progress.loss is not None else ""
        init = stage.resolved.init if stage.resolved and stage.resolved.init else "(preset)"
        cells = [state.name, str(stage.phase), str(progress.step) if progress else "", loss]
        cells += [f"{seconds:.0f}" if seconds else "", init]
        lines.append("| " + " | ".join(cells) + " |")
    if suites:
        benchmarks = sorted({b for s in suites for b in s.status.results})
        lines += ["", "## Evaluation", "", "| suite | " + " | ".join(benchmarks) + " | average |"]
        lines.append("|---" * (len(benchmarks) + 2) + "|")
        for suite in suites:
            cells = [f"{suite.status.results[b]:.1f}" if b in suite.status.results else "" for b in benchmarks]
            average = f"{suite.status.average:.1f}" if suite.status.average is not None else ""
            lines.append(f"| {suite.name} | " + " | ".join(cells) + f" | {average} |")
    with_files = [s for s in suites if s.results is not None and (s.results / "results.json").is_file()]
    if with_files:
        lines += ["", "## Predictions and score files", ""]
        for suite in with_files:
            assert suite.results is not None
            found = [p.name for pattern in ("*.tsv", "*_acc.csv", "*_score.*") for p in suite.results.glob(pattern)]
            files = ["results.json", *sorted(found)]
            links = ", ".join(f"[{name}]({_relative(suite.results / name, out)})" for name in files)
            lines.append(f"- {suite.name}: {links}")
    for name, run in runs:
        if run.progress:
            p = run.progress
            funnel = f"in {p.samples_in}, kept {p.samples_out}, dropped {p.dropped}, rejected {p.rejected}"
            lines += ["", f"## Curation: {name}", "", funnel]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def _relative(path: Path, start: Path) -> str:
    """`path` as a link from a page in `start`."""
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


def _html(markdown: str, figures: list[str]) -> str:
    """The Markdown above as HTML (headings, lists, tables, images: all this report writes)."""
    parts: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if table:
            head, *rows = table
            parts.append("<table border='1' cellpadding='4' style='border-collapse:collapse'>")
            parts.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
            parts.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            parts.append("</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not all(set(cell) <= {"-"} for cell in cells):
                table.append(cells)
            continue
        flush_table()
        text = html.escape(line.strip(" -")).replace("**", "")
        if line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            parts.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            parts.append(f'<p><img src="{html.escape(name)}" alt="{html.escape(name)}" style="max-width:100%"></p>')
        elif line.strip():
            indent = "margin-left:2em;" if line.startswith("  ") else ""
            text = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', text)
            parts.append(f"<p style='{indent}margin-top:0.2em;margin-bottom:0.2em'>{text}</p>")
    flush_table()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sailvl run report</title></head>"
        "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
