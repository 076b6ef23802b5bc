"""Every benchmark an EvalSuite may name, by name: exactly `sailvl.api.benchmarks.BENCHMARKS` (a test keeps them in
step), with the prompt, reading and metric VLMEvalKit uses for each.
"""

from __future__ import annotations

from sailvl.eval import prompts
from sailvl.eval.base import Benchmark
from sailvl.eval.choice import MMMU, MultipleChoice
from sailvl.eval.shapes import ShapesCaption, ShapesChoice, ShapesExact, ShapesPOPE, ShapesWord
from sailvl.eval.vqa import ChartQA, DocumentVQA, MathVista, MMVet, OCRBench, TextVQA
from sailvl.eval.yesno import MME, POPE, HallusionBench


def _registry() -> dict[str, Benchmark]:
    benchmarks: list[Benchmark] = [
        MultipleChoice("MMBench_DEV_EN", circular=True),
        MultipleChoice("MMBench_DEV_EN_V11", circular=True),
        MultipleChoice("MMStar"),
        MMMU("MMMU_DEV_VAL"),
        MME("MME"),
        MultipleChoice("SEEDBench_IMG"),
        MathVista("MathVista_MINI"),
        MMVet("MMVet"),
        HallusionBench("HallusionBench"),
        MultipleChoice("AI2D_TEST"),
        OCRBench("OCRBench"),
        MultipleChoice("RealWorldQA"),
        DocumentVQA("InfoVQA_VAL"),
        ChartQA("ChartQA_TEST"),
        DocumentVQA("DocVQA_VAL"),
        TextVQA("TextVQA_VAL"),
        POPE("POPE", prompts.as_is),
        ShapesCaption("shapes_caption"),
        ShapesChoice("shapes_vqa"),
        ShapesExact("shapes_count"),
        ShapesWord("shapes_ocr"),
        ShapesPOPE("shapes_pope"),
    ]
    return {b.name: b for b in benchmarks}


REGISTRY: dict[str, Benchmark] = _registry()


def get(name: str) -> Benchmark:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(REGISTRY)}") from None
