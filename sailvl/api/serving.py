"""How a `Serving` becomes a server's arguments: one place for the cluster's vLLM Deployments (the operator) and the
local runner (`sailvl serve`, or vLLM with `sailvl run --serving vllm`).

- `--dtype` always (`served_dtype`): a stage's export is served in the stage's precision, as it is stored.
- A model under evaluation is told the most tiles any benchmark of its suite asks for, and vLLM takes each
  request's own `mm_processor_kwargs.max_patches` (`--trust-request-mm-kwargs`; the eval workers are the only
  clients of that server).
- `extraArgs` come last, so a user's own `--dtype=...` or `--max-model-len=...` wins (argparse keeps the last).
"""

from __future__ import annotations

import json

from sailvl.api.common import EXPORT_DTYPES, ServingRuntime


def served_dtype(runtime: ServingRuntime, stage_precision: str | None) -> str:
    """The `--dtype` a model is served with: the one asked for, else the precision of the stage that exported it
    (`stage_precision`, None for a `uri` model), else `auto`."""
    if runtime.dtype != "auto":
        return runtime.dtype
    return EXPORT_DTYPES[stage_precision] if stage_precision is not None else "auto"


def vllm_arguments(
    runtime: ServingRuntime, *, dtype: str, tiles: int | None, parallel: bool = True, load: tuple[str, ...] = ()
) -> list[str]:
    """`vllm serve MODEL` arguments after the model, the name and the address: parallelism (`parallel`: GPUs),
    length, dtype, tiling, `load` (how the weights are read), then `extraArgs`."""
    args: list[str] = []
    if parallel:
        args += ["--tensor-parallel-size", str(runtime.tensor_parallel_size)]
        # GPUs beyond one tensor-parallel group serve as data-parallel engines in the same pod.
        groups = runtime.gpus_per_replica // runtime.tensor_parallel_size
        if groups > 1:
            args += ["--data-parallel-size", str(groups)]
    if runtime.max_model_len:
        args += ["--max-model-len", str(runtime.max_model_len)]
    args += ["--dtype", dtype]
    if tiles is not None:
        args += ["--mm-processor-kwargs", json.dumps({"max_patches": tiles}), "--trust-request-mm-kwargs"]
    return [*args, *load, *runtime.extra_args]


def stand_in_arguments(runtime: ServingRuntime, *, dtype: str, tiles: int | None) -> list[str]:
    """`sailvl serve` arguments after the model, the name and the address (it takes per-request tiles always)."""
    args = ["--max-model-len", str(runtime.max_model_len)] if runtime.max_model_len else []
    args += ["--dtype", dtype]
    return args + (["--max-tiles", str(tiles)] if tiles is not None else [])
