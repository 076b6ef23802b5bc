"""Prometheus metrics of an evaluation (`sailvl_eval_score{benchmark}`, `sailvl_eval_items_total{benchmark}`, as
`sailvl.api.metrics` declares them), served on /metrics from the runner's own event loop with aiohttp, so the
evaluation image needs no Prometheus client library.
"""

from __future__ import annotations

from collections import defaultdict

from aiohttp import web

from sailvl.api.metrics import by_name

SCORE = by_name("sailvl_eval_score")
ITEMS = by_name("sailvl_eval_items_total")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EvalMetrics:
    """Scores (gauges) and answered items (counters) by benchmark."""

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.items: dict[str, int] = defaultdict(int)

    def set_score(self, benchmark: str, score: float) -> None:
        self.scores[benchmark] = score

    def add_items(self, benchmark: str, n: int = 1) -> None:
        self.items[benchmark] += n

    def render(self) -> str:
        """The text exposition format (version 0.0.4)."""
        lines = []
        for metric, values in ((SCORE, self.scores), (ITEMS, dict(self.items))):
            lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.type}"]
            lines += [f'{metric.name}{{benchmark="{_escape(b)}"}} {float(v)!r}' for b, v in sorted(values.items())]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def serve(metrics: EvalMetrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start serving /metrics; the caller cleans the returned runner up."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
