"""Reading answers back: which option a reply chose, whether it said yes or no, which number it gave, and the answer
normalisation of the VQA evaluation.

Everything here is VLMEvalKit's rule, quirks included, at the commit `sailvl.eval.provenance` names
(`vlmeval/utils/matching_util.py`, `vlmeval/smp/misc.py`, `vlmeval/dataset/utils/yorn.py`, `vqa_eval.py`): which
replies a rule reads, and so which go to the judge, decide the published numbers. A reply no rule reads is left to
the judge (`None` here), never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

Z = "Z"  # VLMEvalKit's answer for a reply that refuses or fits no option: never correct
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_OPTION_PUNCTUATION = ".()[],:;!*#{}"
# A letter must be among the last four words: "B is wrong, the answer is C" must not read as B.
_LETTER_WINDOW = 5
# "The answer is C", "the correct answer is **b**": case-insensitive, A-D only ("The answer is a car" reads as A).
_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def can_infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option letter `answer` names (VLMEvalKit's `can_infer_option`), `Z` for a refusal, None when none.

    One upper-case letter among the options as a word of its own within the last four words; no letter but a `Z`;
    then the first "answer is X" with X among A-D. Letters are case-sensitive ("b" is not read)."""
    if "Failed to obtain answer via API" in answer:
        return None
    if any(refusal in answer for refusal in _REFUSALS):
        return Z
    words = answer
    for ch in _OPTION_PUNCTUATION:
        words = words.replace(ch, " ")
    splits = [w.strip() for w in words.split()]
    named = [letter for letter in choices if letter in splits]
    if len(named) == 1 and splits.index(named[0]) > len(splits) - _LETTER_WINDOW:
        return named[0]
    if not named and Z in splits:
        return Z
    verbose = _VERBOSE_ANSWER.search(answer)  # also when several letters, or one too early, were named
    if verbose and verbose.group(1).upper() in choices:
        return verbose.group(1).upper()
    return None


def can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The one option whose text `answer` contains (VLMEvalKit's `can_infer_text`); long answers never qualify."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    found = [letter for letter, text in choices.items() if str(text).lower() in answer]
    return found[0] if len(found) == 1 else None


def can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's `can_infer`: an option letter, then an option's text; None when neither reads uniquely."""
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)


def extract_choice(answer: str, choices: Mapping[str, str]) -> str | None:
    """The option letter (or `Z`) a reply chose, or None when no rule reads one (VLMEvalKit then asks its judge;
    without one the reply counts as `Z`, never right)."""
    return can_infer(str(answer), choices)


# --- the VQA answer normalisation, as VLMEvalKit applies it (smp/misc.py, vqa_eval.py) -------------------------------
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't",
    "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = ("a", "an", "the")
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# A period with no digit on either side goes ("cat." -> "cat"); "3." keeps its period (the official VQA script's
# pattern, `(?!<=\d)`, was meant as this lookbehind and strips it).
_PERIOD_STRIP = re.compile(r"(?<!\d)\.(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_RE_UNICODE_AS_COUNT = 32  # VLMEvalKit passes re.UNICODE where `count` goes: at most 32 periods are removed


def process_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_RE_UNICODE_AS_COUNT)


def process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_vqa(answer: str) -> str:
    """An answer as the VQA evaluation compares it: one line, punctuation and articles dropped, digits for words."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def yes_no(reply: str) -> str:
    """ "Yes", "No" or "Unknown" (VLMEvalKit's `YOrN_Extraction`: exactly one of the two words must occur)."""
    words = process_punctuation(reply.lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return "Unknown"


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")
_WORD_NUMBERS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
)  # fmt: skip
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_WORD_NUMBERS) + r")\b")


def numbers_in(text: str) -> list[str]:
    """The numbers a reply states, in order (thousands separators removed; "zero" to "twelve" count as numbers)."""
    spelled = _NUMBER_WORD.sub(lambda m: str(_WORD_NUMBERS.index(m.group(1))), text.lower())
    return [m.replace(",", "") for m in _NUMBER.findall(spelled)]


def cn_string(text: str) -> bool:
    """Whether `text` holds Chinese characters (VLMEvalKit then asks in Chinese)."""
    return re.search("[\u4e00-\u9fff]", text) is not None
