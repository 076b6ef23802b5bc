"""The three components a TrainStage names in `trainable`, as modules of transformers' InternVL model.

`vision` is `model.vision_tower` (InternViT), `projector` is `model.multi_modal_projector` (the MLP after the pixel
shuffle), `language` is `model.language_model` plus `lm_head` (Qwen2, embeddings included). Every parameter of
`InternVLForConditionalGeneration` belongs to exactly one of them; a tied lm_head is counted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn
from transformers import InternVLForConditionalGeneration

from sailvl.api.trainstage import COMPONENTS, Component


def component_modules(model: InternVLForConditionalGeneration) -> dict[Component, list[nn.Module]]:
    """The modules that make up each component."""
    return {
        "vision": [model.model.vision_tower],
        "projector": [model.model.multi_modal_projector],
        "language": [model.model.language_model, model.lm_head],
    }


def component_parameters(model: InternVLForConditionalGeneration, component: Component) -> Iterator[nn.Parameter]:
    """The parameters of one component, each once (a tied lm_head shares the embedding's)."""
    seen: set[int] = set()
    for module in component_modules(model)[component]:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                yield parameter


def parameter_counts(model: InternVLForConditionalGeneration, trainable_only: bool = False) -> dict[str, int]:
    """Parameters per component and in total (`trainable_only`: those with requires_grad)."""
    counts: dict[str, int] = {
        component: sum(
            p.numel() for p in component_parameters(model, component) if p.requires_grad or not trainable_only
        )
        for component in COMPONENTS
    }
    counts["total"] = sum(counts[c] for c in COMPONENTS)
    return counts


def set_trainable(model: InternVLForConditionalGeneration, trainable: Iterable[str]) -> dict[str, int]:
    """Train the named components and freeze the rest; returns the trainable parameter counts."""
    wanted = set(trainable)
    unknown = wanted - set(COMPONENTS)
    if unknown or not wanted:
        raise ValueError(
            f"trainable must be a non-empty subset of {', '.join(COMPONENTS)}; found {sorted(wanted) or 'nothing'}"
        )
    for component in COMPONENTS:
        for parameter in component_parameters(model, component):
            parameter.requires_grad_(component in wanted)
    return parameter_counts(model, trainable_only=True)


def check_every_parameter_assigned(model: InternVLForConditionalGeneration) -> None:
    """Internal invariant: the components partition the model's parameters (a new transformers module would not)."""
    assigned = {id(p) for component in COMPONENTS for p in component_parameters(model, component)}
    stray = [name for name, p in model.named_parameters() if id(p) not in assigned]
    assert not stray, f"parameters outside vision/projector/language: {stray[:5]}"
