"""The judge: a served language model that reads answers no rule can (VLMEvalKit's GPT judge, in-cluster).

It matches a free-form reply to an option or to yes/no, extracts MathVista's final answer, and grades MMVet's open
answers against the reference, with VLMEvalKit's prompts and retry schedule (temperature 0, then 0.5, 1.0, ...).
Every reply is cached by prompt and temperature, so a rerun asks nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sailvl.eval.extract import can_infer, cn_string, yes_no


class Judge(Protocol):
    async def ask(self, prompt: str, *, temperature: float = 0.0) -> str:
        """The judge's reply to a text-only prompt."""
        ...


MCQ_RETRIES = 3
RETRIES = 5


def option_block(choices: Mapping[str, str]) -> str:
    return "There are several options: \n" + "".join(f"{letter}. {text}\n" for letter, text in choices.items())


def mcq_match_prompt(question: str, choices: Mapping[str, str], prediction: str) -> str:
    return (
        "You are an AI assistant who will help me to match "
        "an answer with several options of a single-choice question. "
        "You are provided with a question, several options, and an answer, "
        "and you need to find which option is most similar to the answer. "
        "If the meaning of all options are significantly different from the answer, output Z. "
        "Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n"
        "Example 1: \n"
        "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
        "Answer: a cute teddy bear\nYour output: A\n"
        "Example 2: \n"
        "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
        "Answer: Spider\nYour output: Z\n"
        "Example 3: \n"
        f"Question: {question}?\nOptions: {option_block(choices)}\nAnswer: {prediction}\nYour output: "
    )


def mcq_match_prompt_cn(question: str, choices: Mapping[str, str], prediction: str) -> str:
    """VLMEvalKit's `build_prompt_cn`, for a question written in Chinese."""
    return (
        "你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。"
        "你会被提供：一个问题，多个选项，一个答案。你的任务是找到与答案意义最相近的选项。"
        "如果所有选项的意义都与答案显著不同，则输出 Z。"
        "你应该输出一个单个的大写字母，例如 A, B, C, D（如果它们是有效选项），或 Z。"
        "例 1:"
        "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 一只可爱的泰迪熊\n输出: A\n"
        "例 2: \n"
        "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 蜘蛛\n输出: Z\n"
        "例 3: \n"
        f"问题: {question}?\n选项: {option_block(choices)}\n答案: {prediction}\n输出: "
    )


async def match_option(judge: Judge, question: str, choices: Mapping[str, str], prediction: str) -> str | None:
    """The option the judge says `prediction` chose (or Z), None when its replies never name one. The prompt is
    VLMEvalKit's, in Chinese for a question in Chinese."""
    build = mcq_match_prompt_cn if cn_string(question) else mcq_match_prompt
    prompt = build(question, choices, prediction)
    for _ in range(MCQ_RETRIES):  # VLMEvalKit asks again at the same temperature
        found = can_infer(await judge.ask(prompt), choices)
        if found:
            return found
    return None


def yes_no_prompt(question: str, prediction: str) -> str:
    return (
        "You are an AI assistant who will help me to match an answer with two options of a question. "
        "The options are only Yes / No. "
        "You are provided with a question and an answer, "
        "and you need to find which option (Yes / No) is most similar to the answer. "
        "If the meaning of all options are significantly different from the answer, output Unknown. "
        "Your should output a single word among the following 3 choices: Yes, No, Unknown.\n"
        "Example 1: \n"
        "Question: Is the word in this image 'Hello'?\nAnswer: The word in this image is 'Hello'.\nYour output: Yes\n"
        "Example 2: \n"
        "Question: Is the word in this image 'Hello'?\n"
        "Answer: The word in this image is not 'Hello'.\nYour output: No\n"
        "Example 3: \n"
        f"Question: {question}?\nAnswer: {prediction}\nYour output: "
    )


async def match_yes_no(judge: Judge, question: str, prediction: str) -> str:
    prompt = yes_no_prompt(question, prediction)
    for attempt in range(RETRIES):
        answer = yes_no(await judge.ask(prompt, temperature=0.5 * attempt))
        if answer != "Unknown":
            return answer
    return "Unknown"


_MATHVISTA_EXAMPLES = (
    "\nHint: Please answer the question requiring an integer answer and provide the final value,\n"
    "e.g., 1, 2, 3, at the end.\n\nQuestion: Which number is missing?\n\n"
    "Model response: The number missing in the sequence is 14.\n\nExtracted answer: 14\n",
    "\nHint: Please answer the question requiring a floating-point number with one decimal place and provide the "
    "final value,\ne.g., 1.2, 1.3, 1.4, at the end.\n\nQuestion: What is the fraction of females facing the camera?"
    "\n\nModel response: The fraction of females facing the camera is 0.6,\nwhich means that six out of ten females "
    "in the group are facing the camera.\n\nExtracted answer: 0.6\n",
    "\nHint: Please answer the question requiring a floating-point number with two decimal places and provide the "
    "final value,\ne.g., 1.23, 1.34, 1.45, at the end.\n\nQuestion: How much money does Luca need to buy a sour "
    "apple candy and a butter-scotch candy? (Unit: $)\n\nModel response: Luca needs $1.45 to buy a sour apple candy "
    "and a butterscotch candy.\n\nExtracted answer: 1.45\n",
    "\nHint: Please answer the question requiring a Python list as an answer and provide the final list,\n"
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n\nQuestion: Between which two years does the line graph saw its "
    "maximum peak?\n\nModel response: The line graph saw its maximum peak between 2007 and 2008.\n\n"
    "Extracted answer: [2007, 2008]\n",
    "\nHint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n\n"
    "Question: What fraction of the shape is blue?\n\nChoices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n\n"
    "Model response: The correct answer is (B) 8/11.\n\nExtracted answer: B\n",
)


def mathvista_prompt(question: str, prediction: str) -> str:
    # VLMEvalKit's wording, typo and missing newline before "Extracted answer:" included: the judge saw exactly this.
    prompt = "\nPlease read the following example.\nThen extract the answer from the model response and type it at "
    prompt += "the end of the prompt.\n\n"
    prompt += "".join(example + "\n" for example in _MATHVISTA_EXAMPLES)
    return prompt + question + "\n" + "Model respone: " + prediction + "Extracted answer:"


async def extract_mathvista(judge: Judge, question: str, prediction: str) -> str:
    return (await judge.ask(mathvista_prompt(question, prediction))).strip()


_MMVET_TABLE = """
Compare the ground truth and prediction from AI models, to give a correctness score for the prediction.
<AND> in the ground truth means it is totally right
only when all elements in the ground truth are present in the prediction,
and <OR> means it is totally right when any one element in the ground truth is present in the prediction.
The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right).
Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries
Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes,
while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues
because the names of these countries do not accurately represent their landscapes. |
The meme talks about Iceland and Greenland. It's pointing out that despite their names,
Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries
Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes,
while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues
because the names of these countries do not accurately represent their landscapes. |
The meme is using humor to point out the misleading nature of Iceland's and Greenland's names.
Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow.
The text 'This is why I have trust issues' is a playful way to suggest
that these contradictions can lead to distrust or confusion.
The humor in this meme is derived from the unexpected contrast between the names of the countries
and their actual physical characteristics. | 1.0
"""


def mmvet_prompt(question: str, truth: str, prediction: str) -> str:
    truth = truth.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return _MMVET_TABLE + "\n" + " | ".join([question, truth, prediction, ""])


async def grade_mmvet(judge: Judge, question: str, truth: str, prediction: str) -> float | None:
    """The judge's correctness score in [0, 1], or None when five replies never parse as one."""
    prompt = mmvet_prompt(question, truth, prediction)
    for attempt in range(RETRIES):
        reply = await judge.ask(prompt, temperature=0.5 * attempt)
        try:
            score = float(reply)
        except ValueError:
            continue
        if 0.0 <= score <= 1.0:
            return score
    return None
