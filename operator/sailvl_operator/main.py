"""`python -m sailvl_operator`: settings from the environment, metrics and liveness endpoints, then kopf."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import threading

import kopf

from sailvl_operator.handlers import build_registry
from sailvl_operator.metrics import OperatorMetrics
from sailvl_operator.settings import Settings, SettingsError


async def run_operator(
    settings: Settings,
    registry: kopf.OperatorRegistry,
    *,
    stop_flag: threading.Event | asyncio.Event | None = None,
    ready_flag: threading.Event | asyncio.Event | None = None,
) -> None:
    """Run kopf with `registry` until `stop_flag` is set (or a signal arrives, in the main thread)."""
    # Replicas with the same peering priority would all pause; a random one lets exactly one act.
    priority = settings.peering_priority if settings.peering_priority is not None else random.randint(1, 2**31 - 1)
    await kopf.operator(
        registry=registry,
        clusterwide=settings.clusterwide,
        namespaces=list(settings.namespaces),
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"sailvl-operator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = OperatorMetrics()
    registry, _controller = build_registry(settings, metrics)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    asyncio.run(run_operator(settings, registry))
    return 0
