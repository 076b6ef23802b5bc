"""The operator's settings: one typed object, read from environment variables with documented defaults.

Every field names its variable and says what it does; `ENVIRONMENT` lists them for the README and the chart.
Nothing here imports kopf, so `sailvl render` can build children with the same defaults the operator uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _default_image() -> str:
    try:
        return f"sailvl/sailvl:{version('sailvl')}"
    except PackageNotFoundError:  # running from a source tree without installing
        return "sailvl/sailvl:latest"


class SettingsError(ValueError):
    """An environment variable that does not hold what its setting needs."""


def _env(name: str, help: str) -> dict[str, str]:
    return {"env": name, "help": help}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the operator needs to know beyond the resources themselves."""

    namespaces: tuple[str, ...] = field(
        default=(),
        metadata=_env("SAILVL_WATCH_NAMESPACES", "Comma-separated namespaces to serve; empty: all namespaces."),
    )
    image: str = field(
        default_factory=_default_image,
        metadata=_env(
            "SAILVL_IMAGE", "The sailvl image (trainer, curation and eval workers) for workloads that do not set image."
        ),
    )
    vllm_image: str | None = field(
        default=None,
        metadata=_env(
            "SAILVL_VLLM_IMAGE",
            "Image of the vLLM servers for models that do not set image; unset: SAILVL_IMAGE (it includes vLLM).",
        ),
    )
    trainer_metrics_port: int = field(
        default=9400,
        metadata=_env(
            "SAILVL_TRAINER_METRICS_PORT", "Port of rank 0's Prometheus endpoint (passed as SAILVL_METRICS_PORT)."
        ),
    )
    worker_metrics_port: int = field(
        default=9400,
        metadata=_env(
            "SAILVL_WORKER_METRICS_PORT",
            "Port of the curation and eval workers' Prometheus endpoint (passed as SAILVL_METRICS_PORT).",
        ),
    )
    worker_retries: int = field(
        default=2,
        metadata=_env(
            "SAILVL_WORKER_RETRIES",
            "Retries of a failed curation worker (per index), finalize or eval pod; exit code 2 is never retried.",
        ),
    )
    models_ready_timeout: float = field(
        default=1800.0,
        metadata=_env(
            "SAILVL_MODELS_READY_TIMEOUT",
            "Seconds a CurationRun or EvalSuite waits for all its vLLM replicas to be available before it fails.",
        ),
    )
    vllm_startup_timeout: float = field(
        default=600.0,
        metadata=_env(
            "SAILVL_VLLM_STARTUP_TIMEOUT",
            "Seconds a vLLM container may take to load its model (its startupProbe) before it is restarted.",
        ),
    )
    trainjob_runtime: str = field(
        default="torch-distributed",
        metadata=_env("SAILVL_TRAINJOB_RUNTIME", "Training runtime that TrainJob stages refer to."),
    )
    trainjob_runtime_kind: str = field(
        default="ClusterTrainingRuntime",
        metadata=_env(
            "SAILVL_TRAINJOB_RUNTIME_KIND", "Kind of that runtime: ClusterTrainingRuntime or TrainingRuntime."
        ),
    )
    timer_interval: float = field(
        default=30.0,
        metadata=_env("SAILVL_TIMER_INTERVAL", "Seconds between the reconciles that follow jobs and refresh status."),
    )
    progress_interval: float = field(
        default=30.0,
        metadata=_env("SAILVL_PROGRESS_INTERVAL", "Seconds between reads of a running stage's rank-0 metrics."),
    )
    scrape_timeout: float = field(
        default=5.0,
        metadata=_env("SAILVL_SCRAPE_TIMEOUT", "Seconds to wait for rank 0's metrics endpoint."),
    )
    watch_inactivity_timeout: float = field(
        default=300.0,
        metadata=_env(
            "SAILVL_WATCH_INACTIVITY_TIMEOUT", "Seconds without a watch event before a watch is considered stalled."
        ),
    )
    watch_probe_interval: float = field(
        default=60.0,
        metadata=_env(
            "SAILVL_WATCH_PROBE_INTERVAL",
            "Seconds between the lists that measure how far each watch is behind the API (the watch-lag gauge).",
        ),
    )
    metrics_port: int = field(
        default=8080,
        metadata=_env("SAILVL_OPERATOR_METRICS_PORT", "Port of the operator's own /metrics; 0 disables it."),
    )
    health_port: int = field(
        default=8081,
        metadata=_env("SAILVL_OPERATOR_HEALTH_PORT", "Port of the liveness endpoint /healthz; 0 disables it."),
    )
    peering: str = field(
        default="sailvl",
        metadata=_env("SAILVL_PEERING", "kopf peering object for HA; `none`: run standalone."),
    )
    peering_priority: int | None = field(
        default=None,
        metadata=_env("SAILVL_PEERING_PRIORITY", "Peering priority; unset: random, so one of several replicas acts."),
    )
    log_level: str = field(
        default="INFO",
        metadata=_env("SAILVL_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR."),
    )

    @property
    def serving_image(self) -> str:
        return self.vllm_image or self.image

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from `environ`; unset or empty variables keep their defaults."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = _PARSERS[f.name](f.metadata["env"], raw)
        return cls(**values)


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds; found {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be greater than 0; found {raw!r}")
    return value


def _port(name: str, raw: str) -> int:
    value = _integer(name, raw)
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be a port number 0-65535; found {raw!r}")
    return value


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer; found {raw!r}") from None


def _count(name: str, raw: str) -> int:
    value = _integer(name, raw)
    if value < 0:
        raise SettingsError(f"{name} must be 0 or more; found {raw!r}")
    return value


def _namespaces(name: str, raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def _text(name: str, raw: str) -> str:
    return raw


def _level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR; found {raw!r}")
    return level


def _runtime_kind(name: str, raw: str) -> str:
    if raw not in ("ClusterTrainingRuntime", "TrainingRuntime"):
        raise SettingsError(f"{name} must be ClusterTrainingRuntime or TrainingRuntime; found {raw!r}")
    return raw


def _peering(name: str, raw: str) -> str:
    return "" if raw.lower() in ("none", "standalone") else raw


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "namespaces": _namespaces,
    "image": _text,
    "vllm_image": _text,
    "trainer_metrics_port": _port,
    "worker_metrics_port": _port,
    "worker_retries": _count,
    "models_ready_timeout": _positive_float,
    "vllm_startup_timeout": _positive_float,
    "trainjob_runtime": _text,
    "trainjob_runtime_kind": _runtime_kind,
    "timer_interval": _positive_float,
    "progress_interval": _positive_float,
    "scrape_timeout": _positive_float,
    "watch_inactivity_timeout": _positive_float,
    "watch_probe_interval": _positive_float,
    "metrics_port": _port,
    "health_port": _port,
    "peering": _peering,
    "peering_priority": _integer,
    "log_level": _level,
}
assert set(_PARSERS) == {f.name for f in dataclasses.fields(Settings)}


def environment_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order: the README's table."""
    defaults = Settings()
    rows = []
    for f in dataclasses.fields(Settings):
        value = getattr(defaults, f.name)
        shown = ",".join(value) if isinstance(value, tuple) else "" if value is None else str(value)
        rows.append((f.metadata["env"], shown, f.metadata["help"]))
    return rows
