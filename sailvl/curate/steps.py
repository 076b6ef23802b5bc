"""The steps as pure functions over records: what to ask a model, and what its answer does to the record.

A step returns the record it passes on (text rewritten, meta annotated) or a `Verdict`: dropped by policy or
rejected by failure, with the reason the counts and `_rejects/` carry. The requests themselves are made by
`sailvl.curate.pipeline`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from sailvl.api.curationrun import FilterStep, JudgeStep, RecaptionStep, ScoreStep
from sailvl.curate.client import Completion
from sailvl.data.records import Record
from sailvl.data.tokens import IMAGE_PLACEHOLDER

Message = dict[str, Any]

ALT_TEXT_HINT = "\n\nThe image's original alt text, which may be noisy or wrong: {alt}"
JUDGE_PROMPT = (
    "Rate the text below as a description of the image, judging: {criteria}.\n\n"
    'Text: """{text}"""\n\n'
    "Give one score from 1 (poor) to 5 (excellent). "
    'Answer with a JSON object only, for example {{"score": 4, "reason": "one short sentence"}}.'
)
SCORE_PROMPT = (
    "Rate the sample below (the image and its text) on each metric, each from 1 (lowest) to 5 (highest):\n"
    "{metrics}\n\n"
    'Text: """{text}"""\n\n'
    "Answer with a JSON object only, one number per metric, for example {example}."
)
RETRY_PROMPT = "Your answer could not be read. Reply with only the JSON object, for example {example}."
METRIC_HINTS = {
    "difficulty": "how hard the sample is for a vision-language model to answer or learn from",
    "complexity": "how much detail and reasoning the sample involves",
    "relevance": "how closely the text relates to the image",
    "richness": "how much true detail about the image the text gives",
    "alignment": "how accurately the text matches what the image shows",
}


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["dropped", "rejected"]
    reason: str


def subject_text(record: Record) -> str | None:
    """The text a step reads: the record's text, else its conversation as plain turns."""
    if record.text is not None and record.text.strip():
        return record.text
    if record.conversations:
        turns = [f"{t['role']}: {t['content'].replace(IMAGE_PLACEHOLDER, '').strip()}" for t in record.conversations]
        return "\n".join(turns)
    return None


def user_message(image_uris: list[str], text: str) -> Message:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": uri}} for uri in image_uris]
    parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


def retry_messages(messages: list[Message], answer: str, example: str) -> list[Message]:
    """The conversation again, with the unreadable answer and a reminder of the format."""
    reminder = {"role": "user", "content": RETRY_PROMPT.format(example=example)}
    return [*messages, {"role": "assistant", "content": answer}, reminder]


def _annotated(record: Record, **updates: Any) -> dict[str, Any]:
    return {**record.meta, **updates}


# recaption


def recaption_messages(step: RecaptionStep, record: Record, image_uris: list[str]) -> list[Message] | Verdict:
    if not image_uris:
        return Verdict("rejected", "missing_image")
    prompt = step.prompt
    if step.use_alt_text and record.text and record.text.strip():
        prompt += ALT_TEXT_HINT.format(alt=record.text.strip())
    return [user_message(image_uris, prompt)]


def apply_caption(record: Record, completion: Completion, model: str) -> Record | Verdict:
    caption = completion.text.strip()
    if not caption:
        return Verdict("rejected", "empty_caption")
    meta = _annotated(record, caption_model=model)
    if record.text is not None:
        meta.setdefault("alt_text", record.text)  # the original text survives any number of recaptions
    if completion.finish_reason == "length":
        meta["caption_truncated"] = True
    return dataclasses.replace(record, text=caption, meta=meta)


# judge

JUDGE_EXAMPLE = '{"score": 4}'


def judge_messages(step: JudgeStep, record: Record, image_uris: list[str]) -> list[Message] | Verdict:
    text = subject_text(record)
    if text is None:
        return Verdict("rejected", "missing_text")
    return [user_message(image_uris, JUDGE_PROMPT.format(criteria="; ".join(step.criteria), text=text))]


def apply_judge(step: JudgeStep, record: Record, score: float | None, model: str) -> Record | Verdict:
    if score is None:
        return Verdict("rejected", "judge_unparseable")
    meta = _annotated(record, judge={**record.meta.get("judge", {}), model: score})
    if score < step.min_score:
        return Verdict("dropped", "judge_below_min")
    return dataclasses.replace(record, meta=meta)


# score


def score_example(step: ScoreStep) -> str:
    return "{" + ", ".join(f'"{m}": 3' for m in step.metrics) + "}"


def score_messages(step: ScoreStep, record: Record, image_uris: list[str]) -> list[Message]:
    metrics = "\n".join(f"- {m}: {METRIC_HINTS[m]}" if m in METRIC_HINTS else f"- {m}" for m in step.metrics)
    text = subject_text(record) or "(none)"
    return [user_message(image_uris, SCORE_PROMPT.format(metrics=metrics, text=text, example=score_example(step)))]


def apply_scores(record: Record, scores: dict[str, float] | None) -> Record | Verdict:
    if scores is None:
        return Verdict("rejected", "score_unparseable")
    return dataclasses.replace(record, meta=_annotated(record, scores={**record.meta.get("scores", {}), **scores}))


# filter


def check_filter(step: FilterStep, record: Record, sides: list[tuple[int, int]]) -> Verdict | None:
    """None if the record passes; `sides` are its images' (width, height)."""
    present = {
        "image": bool(record.images),
        "text": bool(record.text and record.text.strip()),
        "conversations": bool(record.conversations),
    }
    for part in step.require:
        if not present[part]:
            return Verdict("dropped", f"filter_require_{part}")
    chars = len(subject_text(record) or "")
    if step.min_chars is not None and chars < step.min_chars:
        return Verdict("dropped", "filter_min_chars")
    if step.max_chars is not None and chars > step.max_chars:
        return Verdict("dropped", "filter_max_chars")
    for width, height in sides:
        if step.min_image_side is not None and min(width, height) < step.min_image_side:
            return Verdict("dropped", "filter_min_image_side")
        if step.max_aspect_ratio is not None and max(width, height) / min(width, height) > step.max_aspect_ratio:
            return Verdict("dropped", "filter_max_aspect_ratio")
    return None
