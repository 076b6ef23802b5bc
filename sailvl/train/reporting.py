"""What rank 0 tells the world: Prometheus metrics, `progress.json` and `history.jsonl` beside the checkpoints,
optional TensorBoard scalars, and the termination message.

The exported metrics are exactly the trainer's in `sailvl.api.metrics` (the contract with the operator, the
dashboards and the alerts); the trainer computes a value for each (`StepReport.metric_values`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from sailvl.api.metrics import METRICS
from sailvl.train.checkpoint import write_text_atomic

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
HISTORY_FILE = "history.jsonl"
TENSORBOARD_DIR = "tensorboard"
THROUGHPUT_WINDOW = 20  # steps the tokens/s figure averages over
MAX_TERMINATION_MESSAGE = 4096  # bytes Kubernetes keeps of a termination message


@dataclass(frozen=True, kw_only=True)
class StepReport:
    """One optimizer step as reported (gang-wide figures)."""

    step: int
    total_steps: int | None
    loss: float
    lr: float
    grad_norm: float
    samples: int
    tokens: int
    tokens_per_second: float
    mfu: float | None
    percent: float
    eta_seconds: float | None
    seconds: float

    def metric_values(self) -> dict[str, float]:
        """The metrics' values; an unknown one (MFU without a known peak, steps of an epoch budget) is left out,
        so its series is absent rather than NaN."""
        values: dict[str, float | None] = {
            "sailvl_train_step": self.step,
            "sailvl_train_total_steps": self.total_steps,
            "sailvl_train_loss": self.loss,
            "sailvl_train_tokens_total": self.tokens,
            "sailvl_train_tokens_per_second": self.tokens_per_second,
            "sailvl_train_mfu_ratio": self.mfu,
            "sailvl_train_lr": self.lr,
            "sailvl_train_grad_norm": self.grad_norm,
        }
        return {name: value for name, value in values.items() if value is not None}


# Gauges that exist only once they have a value: MFU needs a known peak FLOP/s, total steps a budget in steps.
OPTIONAL = frozenset({"sailvl_train_mfu_ratio", "sailvl_train_total_steps"})


class TrainerMetrics:
    """The trainer's Prometheus metrics on their own registry, served over HTTP when a port is given."""

    def __init__(self, port: int | None) -> None:
        self.registry = CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}
        self._counters: dict[str, Counter] = {}
        self._counted: dict[str, float] = {}
        self._optional = {m.name: m for m in METRICS if m.exporter == "trainer" and m.name in OPTIONAL}
        for metric in METRICS:
            if metric.exporter != "trainer" or metric.name in OPTIONAL:
                continue
            if metric.type == "counter":  # prometheus_client appends _total to a counter's name
                self._counters[metric.name] = Counter(
                    metric.name.removesuffix("_total"), metric.help, registry=self.registry
                )
            else:
                self._gauges[metric.name] = Gauge(metric.name, metric.help, registry=self.registry)
        self.names = sorted([*self._gauges, *self._counters])
        self._server: Any = None
        self.port: int | None = None
        if port is not None:
            self._server, _ = start_http_server(port, registry=self.registry)
            self.port = int(self._server.server_port)
            log.info("metrics on http://0.0.0.0:%d/metrics", self.port)

    def publish(self, values: dict[str, float]) -> None:
        missing = [name for name in self.names if name not in values]
        assert not missing, f"the trainer reports no value for the registered metrics {missing}"
        for name, metric in self._optional.items():  # registered with their first value: absent until known
            if name in values and name not in self._gauges:
                self._gauges[name] = Gauge(name, metric.help, registry=self.registry)
        for name, gauge in self._gauges.items():
            gauge.set(values[name])
        for name, counter in self._counters.items():
            delta = values[name] - self._counted.get(name, 0.0)
            if delta > 0:
                counter.inc(delta)
                self._counted[name] = values[name]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class ProgressLog:
    """`progress.json` (the latest step, for the local runner) and `history.jsonl` (every step, for reports)."""

    def __init__(self, root: Path, *, resumed_step: int) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._truncate_history(resumed_step)
        self._window: deque[tuple[int, float]] = deque(maxlen=THROUGHPUT_WINDOW)
        self.tensorboard = _tensorboard(root / TENSORBOARD_DIR)

    def throughput(self, tokens: int, seconds: float) -> float:
        """Tokens per second over the last steps."""
        self._window.append((tokens, seconds))
        elapsed = sum(s for _, s in self._window)
        return sum(t for t, _ in self._window) / elapsed if elapsed > 0 else 0.0

    def step_time(self) -> float:
        """Seconds per step over the last steps."""
        return sum(s for _, s in self._window) / len(self._window) if self._window else 0.0

    def write(self, report: StepReport) -> None:
        record = {**_camel(asdict(report)), "time": time.time()}
        with open(self.root / HISTORY_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        progress = {**record, "eta": format_eta(report.eta_seconds) if report.eta_seconds is not None else None}
        write_text_atomic(self.root / PROGRESS_FILE, json.dumps(progress, indent=2) + "\n")
        if self.tensorboard is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_second", "mfu"):
                value = getattr(report, key)
                if value is not None and math.isfinite(value):
                    self.tensorboard.add_scalar(f"train/{key}", value, report.step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _truncate_history(self, resumed_step: int) -> None:
        """Steps after the checkpoint resumed from were lost with the process and will be trained again."""
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _step_of(line) <= resumed_step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def read_history(root: Path) -> list[dict[str, Any]]:
    path = root / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_termination_message(path: Path | None, message: dict[str, Any]) -> None:
    """The JSON result the operator reads from the container's termination message (at most 4 KiB)."""
    if path is None:
        return
    text = json.dumps(message, separators=(",", ":"))
    if len(text.encode()) > MAX_TERMINATION_MESSAGE and isinstance(message.get("error"), str):
        # An error message is the only part that can be long; Kubernetes would cut the JSON mid-string.
        room = MAX_TERMINATION_MESSAGE - len(text.encode()) + len(message["error"].encode()) - 16
        text = json.dumps({**message, "error": message["error"].encode()[: max(room, 0)].decode(errors="ignore")})
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        log.warning("cannot write the termination message to %s: %s", path, exc)


def format_eta(seconds: float) -> str:
    """`3h12m`, `45m10s`, `12s`."""
    total = max(round(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # an unreadable line (a write cut short) is dropped with the lost steps


def _camel(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        head, *rest = key.split("_")
        out[head + "".join(w.title() for w in rest)] = value
    return out


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None  # TensorBoard is optional: without the package, metrics and history.jsonl carry the same
    return SummaryWriter(log_dir=str(folder))
