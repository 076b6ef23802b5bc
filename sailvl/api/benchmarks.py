"""The benchmark names an EvalSuite may list, and the four groups the paper reports.

The evaluation registry (`sailvl.eval`) implements each of these; a test keeps the two in sync.
"""

from __future__ import annotations

# The publicly known benchmarks of SAIL-VL's evaluation table (VLMEvalKit names).
PAPER_BENCHMARKS: tuple[str, ...] = (
    "MMBench_DEV_EN",
    "MMBench_DEV_EN_V11",
    "MMStar",
    "MMMU_DEV_VAL",
    "MME",
    "SEEDBench_IMG",
    "MathVista_MINI",
    "MMVet",
    "HallusionBench",
    "AI2D_TEST",
    "OCRBench",
    "RealWorldQA",
    "InfoVQA_VAL",
    "ChartQA_TEST",
    "DocVQA_VAL",
    "TextVQA_VAL",
    "POPE",
)
# Benchmarks over synthetic://shapes images with exact ground truth: the recipe scored with no download.
SYNTHETIC_BENCHMARKS: tuple[str, ...] = (
    "shapes_caption",
    "shapes_vqa",
    "shapes_count",
    "shapes_ocr",
    "shapes_pope",
)
BENCHMARKS: tuple[str, ...] = PAPER_BENCHMARKS + SYNTHETIC_BENCHMARKS

# The paper's exact assignment is not public; this is ours (status.groups keys).
GROUPS: dict[str, tuple[str, ...]] = {
    "generalVQA": (
        "MMBench_DEV_EN",
        "MMBench_DEV_EN_V11",
        "MMStar",
        "MME",
        "SEEDBench_IMG",
        "RealWorldQA",
        "MMVet",
    ),
    "ocrVQA": ("OCRBench", "InfoVQA_VAL", "ChartQA_TEST", "DocVQA_VAL", "TextVQA_VAL"),
    "mathKnowledge": ("MMMU_DEV_VAL", "MathVista_MINI", "AI2D_TEST"),
    "hallucination": ("HallusionBench", "POPE"),
}


def group_of(benchmark: str) -> str | None:
    return next((group for group, members in GROUPS.items() if benchmark in members), None)
