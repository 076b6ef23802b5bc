"""The metrics, as pure functions of answers: ANLS, VQA accuracy, relaxed accuracy, OCRBench's count, MME's
perception/cognition score, POPE's F1, HallusionBench's aAcc/fAcc/qAcc, circular multiple choice and fact F1.

Each follows its benchmark's definition as VLMEvalKit computes it (`vlmeval/dataset/utils/vqa_eval.py`, `yorn.py`,
`multiple_choice.py`, `image_vqa.py`); where VLMEvalKit departs from a paper's wording the code says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from sailvl.eval.extract import normalize_vqa

ANLS_THRESHOLD = 0.5
RELAXED_TOLERANCE = 0.05
MME_PERCEPTION = (
    "OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position", "posters", "scene",
)  # fmt: skip
MME_COGNITION = ("code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation")


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


# --- open answers -----------------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    if len(a) > len(b):
        a, b = b, a
    previous = list(range(len(a) + 1))
    for j, cb in enumerate(b, start=1):
        current = [j]
        for i, ca in enumerate(a, start=1):
            current.append(previous[i - 1] if ca == cb else 1 + min(previous[i - 1], previous[i], current[-1]))
        previous = current
    return previous[-1]


def normalized_distance(truth: str, prediction: str) -> float:
    """VLMEvalKit's `anls_compute`: the Levenshtein distance of the lower-cased, whitespace-collapsed strings over
    the longer of the two *raw* strings' upper-cased lengths (so padding or "ß" -> "SS" lengthens it)."""
    t, p = " ".join(truth.strip().lower().split()), " ".join(prediction.strip().lower().split())
    longest = max(len(truth.upper()), len(prediction.upper()))
    return 0.0 if longest == 0 else levenshtein(t, p) / longest


def anls(truths: Sequence[str], prediction: str, threshold: float = ANLS_THRESHOLD) -> float:
    """Average Normalized Levenshtein Similarity of one item: 1 - the smallest distance to any true answer, and 0
    when that similarity is below the threshold (VLMEvalKit keeps a similarity of exactly 0.5). The prediction is
    not stripped."""
    similarity = 1.0 - min(normalized_distance(t, prediction) for t in truths)
    return 0.0 if similarity < threshold else similarity


def vqa_accuracy(truths: Sequence[str], prediction: str) -> float:
    """The VQA accuracy of one item: for each of the (ten) human answers, min(1, matches among the other nine / 3),
    averaged over the ten; answers are normalised as the official evaluation does."""
    truths = [normalize_vqa(t) for t in truths]
    predicted = normalize_vqa(prediction)
    per_answer = []
    for i in range(len(truths)):
        others = truths[:i] + truths[i + 1 :]
        per_answer.append(min(1.0, sum(1 for t in others if t == predicted) / 3))
    return mean(per_answer)


def _to_float(text: str) -> float | None:
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_correct(truth: str, prediction: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """ChartQA's relaxed accuracy (Methani et al.): a number within 5% of a non-zero true number is right;
    anything else must match exactly, ignoring case."""
    p, t = _to_float(prediction), _to_float(truth)
    if p is not None and t:
        return abs(p - t) / abs(t) <= tolerance
    return prediction.lower() == truth.lower()


def relaxed_accuracy(truths: Sequence[str], prediction: str) -> float:
    return 1.0 if any(relaxed_correct(t, prediction.strip()) for t in truths) else 0.0


OCRBENCH_MATH = "Handwritten Mathematical Expression Recognition"


def ocrbench_hit(truths: Sequence[str], prediction: str, category: str) -> bool:
    """OCRBench: a true answer contained in the reply (case-insensitive; formulas compare with spaces removed)."""
    if category == OCRBENCH_MATH:
        squeezed = prediction.strip().replace("\n", " ").replace(" ", "")
        return any(t.strip().replace("\n", " ").replace(" ", "") in squeezed for t in truths)
    lowered = prediction.lower().strip().replace("\n", " ")
    return any(t.lower().strip().replace("\n", " ") in lowered for t in truths)


# --- yes / no ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Binary:
    """Precision, recall, F1 and accuracy of yes/no answers, "Yes" being the positive class."""

    accuracy: float
    precision: float
    recall: float
    f1: float


def binary_scores(truths: Sequence[str], extracted: Sequence[str]) -> Binary:
    """POPE's figures; an answer that is neither yes nor no counts as a "No" that is wrong (VLMEvalKit)."""
    tp = sum(t == "Yes" and e == "Yes" for t, e in zip(truths, extracted, strict=True))
    fp = sum(t != "Yes" and e == "Yes" for t, e in zip(truths, extracted, strict=True))
    fn = sum(t == "Yes" and e != "Yes" for t, e in zip(truths, extracted, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = mean(float(t == e) for t, e in zip(truths, extracted, strict=True))
    return Binary(accuracy, precision, recall, f1)


@dataclass(frozen=True)
class MMEScore:
    per_category: dict[str, float]  # accuracy + accuracy+, each in percent (0-200)
    perception: float
    cognition: float

    @property
    def total(self) -> float:
        return self.perception + self.cognition


def mme_score(records: Iterable[tuple[str, Hashable, bool]]) -> MMEScore:
    """MME from (category, image, correct): per category, accuracy over questions plus accuracy+ over images (both
    questions of an image right), in percent; perception sums 10 categories (max 2000), cognition 4 (max 800)."""
    by_category: dict[str, dict[Hashable, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for category, image, correct in records:
        by_category[category][image].append(correct)
    per_category = {}
    for category, images in sorted(by_category.items()):
        accuracy = mean(float(c) for answers in images.values() for c in answers)
        accuracy_plus = mean(float(all(answers)) for answers in images.values())
        per_category[category] = 100 * (accuracy + accuracy_plus)
    perception = sum(v for k, v in per_category.items() if k in MME_PERCEPTION)
    cognition = sum(v for k, v in per_category.items() if k in MME_COGNITION)
    return MMEScore(per_category, perception, cognition)


@dataclass(frozen=True)
class HallusionScore:
    a_acc: float  # per question
    f_acc: float  # per figure: every question about it right
    q_acc: float  # per question across its figures: every variant right


def hallusion_score(records: Iterable[tuple[str, str, str, str, bool]]) -> HallusionScore:
    """HallusionBench from (subcategory, set, figure, question, correct), in percent (VLMEvalKit's keys: the
    `l2-category` with the set and figure or question ids read from the index)."""
    records = list(records)
    figures: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    questions: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for sub, set_id, figure, question, correct in records:
        figures[(sub, set_id, figure)].append(correct)
        questions[(sub, set_id, question)].append(correct)
    return HallusionScore(
        a_acc=100 * mean(float(r[-1]) for r in records),
        f_acc=100 * mean(float(all(v)) for v in figures.values()),
        q_acc=100 * mean(float(all(v)) for v in questions.values()),
    )


# --- multiple choice -----------------------------------------------------------------------------------------------
CIRCULAR_STRIDE = 1_000_000  # VLMEvalKit stores the k-th rotation of question i at index i + k * 1e6


def circular_accuracy(records: Iterable[tuple[int, bool]]) -> tuple[float, int]:
    """(accuracy, questions) under circular evaluation: a question counts only if every rotation of its options
    that the file holds was answered right. Records are (index, correct)."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for index, correct in records:
        groups[index % CIRCULAR_STRIDE].append(correct)
    return mean(float(all(v)) for v in groups.values()), len(groups)


# --- captions ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FactScore:
    precision: float
    recall: float
    f1: float


def fact_f1(stated: Iterable[str], truth: Iterable[str]) -> FactScore:
    """Recall (the share of true facts a caption states), precision (the share of stated facts that are true) and
    their F1, over canonical fact keys. A caption that states nothing scores 0."""
    stated_set, truth_set = set(stated), set(truth)
    right = len(stated_set & truth_set)
    precision = right / len(stated_set) if stated_set else 0.0
    recall = right / len(truth_set) if truth_set else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return FactScore(precision, recall, f1)
