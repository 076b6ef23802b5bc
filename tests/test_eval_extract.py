"""Reading answers back: option letters and yes/no (VLMEvalKit's rules alone; tests/test_eval_vlmevalkit_parity.py
holds VLMEvalKit's own verdicts), numbers, VQA normalisation."""

from __future__ import annotations

import pytest

from sailvl.eval.extract import can_infer, extract_choice, normalize_vqa, numbers_in, yes_no

CHOICES = {"A": "cat", "B": "dog", "C": "red car", "D": "blue sky"}
LONG_EARLY_LETTER = (
    "The letter B is my answer because in the picture there is clearly a small animal sitting on the grass "
    "next to a tree in the park"
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("[B]", "B"),
        ("**B**", "B"),
        ("B: dog", "B"),
        ("B. dog", "B"),
        ("C. red car", "C"),
        ("The answer is B.", "B"),
        ("Answer: B", "B"),
        ("Option B", "B"),
        ("I choose option (D).", "D"),
        ("dog", "B"),  # the option's text alone
        ("Dog", "B"),
        ("dog.", "B"),
        ("red car", "C"),
        ("The red car on the left", "C"),
        ("The image shows a cat.", "A"),  # lower-case "a" is an article, not an option
        ("A cat", "A"),
        ("b", None),  # letters are case-sensitive: VLMEvalKit leaves these to its judge
        ("(b)", None),
        ("c.", None),
        ("the answer is c", "C"),  # but its "answer is X" rule ignores case
        ("\\boxed{C}", "C"),
        ("So the final answer is \\boxed{(D)}", "D"),
        ("Cannot determine the answer", "Z"),  # a refusal: VLMEvalKit's Z, never correct
        ("Z", "Z"),
        ("", None),  # no answer
        ("   ", None),
        ("I don't know", None),
        ("A or B", None),  # two letters: ambiguous
        ("B is wrong, the answer is C", "C"),  # two letters, then "answer is C"
        ("cat or dog", None),  # two options' texts
        ("E", None),  # not an option
        ("e", None),
        ("Failed to obtain answer via API.", None),
        (LONG_EARLY_LETTER, None),  # a letter far from the end of a long reply is not taken
    ],
)
def test_option_extraction(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, CHOICES) == expected


def test_vlmevalkit_rules_alone_leave_lower_case_letters_to_the_judge() -> None:
    assert can_infer("b", CHOICES) is None
    assert can_infer("The answer is B.", CHOICES) == "B"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes", "Yes"),
        ("yes.", "Yes"),
        ("YES", "Yes"),
        ("The answer is yes", "Yes"),
        ("No, there is not.", "No"),
        ("NO", "No"),
        ("Yes and no", "Unknown"),
        ("I cannot tell", "Unknown"),
        ("", "Unknown"),
        ("Noisy", "Unknown"),  # a word that starts with "no" is not "no"
    ],
)
def test_yes_no(reply: str, expected: str) -> None:
    assert yes_no(reply) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("There are three.", ["3"]),
        ("3", ["3"]),
        ("-2.5 and 1,000", ["-2.5", "1000"]),
        ("version v2 has twelve", ["12"]),
        ("none", []),
    ],
)
def test_numbers(text: str, expected: list[str]) -> None:
    assert numbers_in(text) == expected


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("The Two dogs.", "2 dogs"),
        ("Hello, world!", "hello world"),
        ("a red-car", "red car"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("dont", "don't"),
        ("line\nbreak\tand tab", "line break and tab"),
    ],
)
def test_vqa_normalisation(answer: str, normalized: str) -> None:
    assert normalize_vqa(answer) == normalized
