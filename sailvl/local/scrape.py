"""Reading a child's Prometheus endpoint: sample values summed by metric name (unreachable → empty)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def scrape(url: str, session: aiohttp.ClientSession) -> dict[str, float]:
    """Sample name → value summed over label sets (`x_total` counters, gauges); {} when the endpoint is down."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            if response.status != 200:
                return {}
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


async def scrape_labelled(url: str, session: aiohttp.ClientSession, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of one metric with its labels."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            text = await response.text() if response.status == 200 else ""
    except (aiohttp.ClientError, TimeoutError):
        return []
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
