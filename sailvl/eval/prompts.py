"""What the model is asked: the per-dataset instructions of SAIL-VL's VLMEvalKit model class (`SailVL.build_prompt`,
the InternVL family's custom prompts), so that answers are comparable with the paper's table.
"""

from __future__ import annotations

from sailvl.eval.extract import cn_string
from sailvl.eval.items import Item

SHORT_ANSWER = "Answer the question using a single word or phrase."
YES_OR_NO = "Please answer yes or no."
CHOICE_LETTER = "Answer with the option's letter from the given choices directly."
CHOICE_LETTER_CN = "请直接回答选项字母。"
DIRECT = "Answer the question directly."
DIRECT_CN = "请直接回答问题。"


def multiple_choice(item: Item) -> str:
    """Hint, question, one line per option (`A. text`), then the instruction to answer with the letter."""
    question = item["question"]
    hint = item.get("hint")
    if hint is not None:
        question = f"{hint}\n{question}"
    options = item.options
    for letter, text in options.items():
        question += f"\n{letter}. {text}"
    chinese = cn_string(question)
    if options:
        return question + "\n" + (CHOICE_LETTER_CN if chinese else CHOICE_LETTER)
    return question + "\n" + (DIRECT_CN if chinese else DIRECT)


def short_answer(item: Item) -> str:
    """OCR and document VQA: a word or phrase."""
    return f"{item['question']}\n{SHORT_ANSWER}"


def mme(item: Item) -> str:
    return f"{item['question']} {SHORT_ANSWER}"


def hallusion(item: Item) -> str:
    return f"{item['question']} {YES_OR_NO} {SHORT_ANSWER}"


def as_is(item: Item) -> str:
    """POPE, MathVista and MMVet: the question as the file states it (MathVista's carries its own hint)."""
    return item["question"]
