"""Grading answers to real benchmarks, rule-based, the way the papers' exact-match protocol does.

An answer is read from the completion's last <answer>...</answer> or \\boxed{} (after PAPO-Eval's
removal of spaces around "<", ">" and "/"), then compared by answer type: numbers and expressions
by math-verify, multiple choice by option letters (or by an option's text), yes/no by its first
word. tokencredit.evaluation builds a split's record from these graders, with the accuracies a
benchmark's release defines besides question accuracy (HallusionBench's question-, figure- and
pair-level accuracies).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tokencredit.rewards import completion_text, extract_answer, math_equal
from tokencredit.sources.answers import option_letters, yes_no
from tokencredit.sources.schema import ANSWER_TYPES

TAG_SPACES = re.compile(r"\s*(<|>|/)\s*")
# VPPO's format check: a think block, then a boxed answer.
BOXED_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)


def extract(completion: str) -> str | None:
    """The answer a completion gives: the last <answer> tag or \\boxed{}, or None."""
    return extract_answer(TAG_SPACES.sub(r"\1", completion))


def chosen_letters(prediction: str, choices: Sequence[str]) -> tuple[str, ...] | None:
    """The option letters a prediction names, or the letter of the option whose text it gives."""
    letters = option_letters(prediction)
    if letters is not None:
        return letters
    for match in (lambda c: c.strip().lower() == prediction.strip().lower(), lambda c: math_equal(prediction, c)):
        named = [chr(ord("A") + i) for i, choice in enumerate(choices) if match(str(choice))]
        if len(named) == 1:
            return tuple(named)
    return None


def is_correct(prediction: str | None, answer: str, answer_type: str, choices: Sequence[str] = ()) -> bool:
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r} (known: {', '.join(ANSWER_TYPES)})")
    if prediction is None:
        return False
    if answer_type == "multiple_choice":
        return chosen_letters(prediction, choices) == option_letters(answer)
    if answer_type == "yes_no":
        return yes_no(prediction) == answer.strip().lower()
    return math_equal(prediction, answer)


def score(completion: str, answer: str, answer_type: str, choices: Sequence[str] = ()) -> int:
    """1 when the answer the completion gives is correct, else 0."""
    return int(is_correct(extract(completion), answer, answer_type, choices))


def avg_at_k(scores: Sequence[int]) -> float:
    """Mean correctness over the k samples of one question."""
    if not scores:
        raise ValueError("avg@k of no samples")
    return sum(scores) / len(scores)


def accuracy_reward(completions: list, answer: list[str], answer_type: list[str], choices: list | None = None, **_: Any) -> list[float]:
    """TRL reward function for real datasets (a `choices` column feeds option-text matching)."""
    choices = choices if choices is not None else [()] * len(completions)
    return [
        float(score(completion_text(c), a, t, ch))
        for c, a, t, ch in zip(completions, answer, answer_type, choices, strict=True)
    ]


def boxed_format_reward(completions: list, **_: Any) -> list[float]:
    """TRL reward function: 1 for "<think>...</think> ... \\boxed{...}" (VPPO's / PGPO's format score)."""
    return [float(bool(BOXED_FORMAT.fullmatch(completion_text(c).strip()))) for c in completions]


def _all_correct_share(keys: Sequence[tuple], correct: Sequence[int]) -> float:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for key, c in zip(keys, correct, strict=True):
        groups[key].append(c)
    return sum(all(g) for g in groups.values()) / len(groups) if groups else float("nan")


def hallusion_accuracies(metadata: Sequence[dict], correct: Sequence[int]) -> dict[str, float]:
    """HallusionBench's accuracies as its release computes them (utils.py):

    aAcc: questions answered correctly; fAcc: figures (category, subcategory, set, figure) whose
    questions are all correct, leaving out VS questions asked without a figure (figure 0);
    qAcc: question pairs (category, subcategory, set, question) correct on every figure.
    """
    def key(m: dict, *names: str) -> tuple:
        return tuple(str(m[n]) for n in ("category", "subcategory", "set_id", *names))

    figures = [(key(m, "figure_id"), c) for m, c in zip(metadata, correct) if not (m["category"] == "VS" and str(m["figure_id"]) == "0")]
    return {
        "aAcc": sum(correct) / len(correct),
        "fAcc": _all_correct_share([k for k, _ in figures], [c for _, c in figures]),
        "qAcc": _all_correct_share([key(m, "question_id") for m in metadata], correct),
    }


# Accuracies a benchmark's release defines besides question accuracy, by adapter name.
RELEASE_METRICS: dict[str, Callable[[Sequence[dict], Sequence[int]], dict[str, float]]] = {"hallusionbench": hallusion_accuracies}
