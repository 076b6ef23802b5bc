"""What a curation process is told: the CurationRun (a manifest YAML or the resolved JSON), which worker it is,
and where each served model answers (`SAILVL_MODEL_URL_<NAME>`, DESIGN §4).

Every mistake here is a `SpecError`: the command exits 2 (never retried) with a message naming the file, the
field or the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from sailvl.api import CurationRun, ManifestError, load_yaml, parse_resource

MODEL_URL_PREFIX = "SAILVL_MODEL_URL_"


class SpecError(ValueError):
    """A spec, an argument or an environment variable the curation cannot run with."""


def load_run(path: str | Path) -> CurationRun:
    """The one CurationRun in `path` (YAML or JSON; other kinds in the same file are ignored)."""
    path = Path(path)
    try:
        docs = load_yaml(path.read_text())
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML or JSON ({e})") from None
    runs = [doc for doc in docs if isinstance(doc, dict) and doc.get("kind") == "CurationRun"]
    if len(runs) != 1:
        kinds = [doc.get("kind") if isinstance(doc, dict) else type(doc).__name__ for doc in docs]
        raise SpecError(f"{path}: expected exactly one CurationRun document; found {len(runs)} (documents: {kinds})")
    try:
        run = parse_resource(runs[0])
    except ManifestError as e:
        raise SpecError(f"{path}: {e}") from None
    assert isinstance(run, CurationRun)
    if run.spec.input.uri is None:
        raise SpecError(
            f"{path}: spec.input.curationRun ({run.spec.input.curation_run}) must be resolved to that run's output "
            "URI before the workers start (the operator and the local runner write the resolved spec)"
        )
    return run


def model_env_name(model: str) -> str:
    return MODEL_URL_PREFIX + model.upper().replace("-", "_")


def model_urls(run: CurationRun, env: Mapping[str, str]) -> dict[str, str]:
    """Served model name -> OpenAI base URL (ending in /v1), for every model a step uses."""
    urls: dict[str, str] = {}
    for i, step in enumerate(run.spec.steps):
        if step.model is None or step.model in urls:
            continue
        name = model_env_name(step.model)
        url = env.get(name, "").strip()
        if not url:
            raise SpecError(
                f"spec.steps[{i}].{step.kind} uses model {step.model!r}, but {name} is not set; "
                "it must hold the model's OpenAI base URL, e.g. http://host:8000/v1"
            )
        if not url.startswith(("http://", "https://")):
            raise SpecError(f"{name} must be an http:// or https:// URL ending in /v1; found {url!r}")
        urls[step.model] = url.rstrip("/")
    return urls


def worker_slot(worker: int | None, workers: int | None, run: CurationRun, env: Mapping[str, str]) -> tuple[int, int]:
    """(index, count) of this worker: --worker, else JOB_COMPLETION_INDEX (an Indexed Job); --workers, else
    spec.workers.parallelism."""
    count = workers if workers is not None else run.spec.workers.parallelism
    if count < 1:
        raise SpecError(f"--workers must be at least 1; found {count}")
    if worker is None:
        index_text = env.get("JOB_COMPLETION_INDEX")
        if index_text is None:
            if count > 1:
                raise SpecError(f"--worker is required with {count} workers (or set JOB_COMPLETION_INDEX)")
            index_text = "0"
        if not index_text.strip().isdigit():
            raise SpecError(f"JOB_COMPLETION_INDEX must be a non-negative integer; found {index_text!r}")
        worker = int(index_text)
    if not 0 <= worker < count:
        raise SpecError(f"the worker index must be in [0, {count}); found {worker}")
    return worker, count
