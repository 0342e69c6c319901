"""Grading answers to real benchmarks, rule-based, the way the papers' exact-match protocol does.

An answer is read from the completion's last marker of the row's answer format (\\boxed{} or
<answer>...</answer>, after the last </think>: tokencredit.rewards.final_answer), then compared by
answer type: numbers and expressions by math-verify, multiple choice by option letters (or by an
option's text), yes/no by its first word. A row may carry its release's own number rule:
MathVista's `precision` (the prediction is rounded to that many decimals, then compared with the
answer's text) and DynaMath's `tolerance` (an absolute difference). tokencredit.evaluation builds a split's record from these graders, with
the metrics a benchmark's official scorer reports besides question accuracy (RELEASE_METRICS).

Where the official scorer is an LLM (MathVerse, LogicVista, and the answer extraction of MathVista,
DynaMath and HallusionBench), these rules stand in for it: figures are "rule-based".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tokencredit.rewards import AnswerFormat, answer_formats, completion_text, final_answer, math_equal
from tokencredit.sources.answers import option_letters, yes_no
from tokencredit.sources.schema import ANSWER_TYPES


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


def plain_number(text: str) -> float | None:
    """A number the way DynaMath's scorer reads one: the first word, a float or a multiple of π
    ("2π", "2\\pi"); None when it is not one."""
    words = text.strip().replace("\\pi", "π").split()
    if not words:
        return None
    word, pi = (words[0][:-1], math.pi) if words[0].endswith("π") else (words[0], 1.0)
    try:
        return float(word or 1) * pi
    except ValueError:
        return None


def is_correct(
    prediction: str | None,
    answer: str,
    answer_type: str,
    choices: Sequence[str] = (),
    precision: float | None = None,
    tolerance: float | None = None,
) -> bool:
    """Whether `prediction` is `answer`. `precision` (MathVista): the prediction rounded to that many
    decimals has the answer's text; `tolerance` (DynaMath): within that absolute difference. Either
    applies to a prediction that is a plain number; any other falls back to math-verify."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r} (known: {', '.join(ANSWER_TYPES)})")
    if prediction is None:
        return False
    if answer_type == "multiple_choice":
        return chosen_letters(prediction, choices) == option_letters(answer)
    if answer_type == "yes_no":
        return yes_no(prediction) == answer.strip().lower()
    value, gold = plain_number(prediction), plain_number(answer)
    if value is not None and precision is not None and not math.isnan(precision):
        return str(round(value, int(precision))) == answer.strip()
    if value is not None and gold is not None and tolerance is not None:
        return abs(value - gold) <= tolerance
    return math_equal(prediction, answer)


def score(
    completion: str, answer: str, answer_type: str, choices: Sequence[str], answer_format: AnswerFormat, **rule: float | None
) -> int:
    """1 when the answer the completion gives in `answer_format` is correct, else 0 (`rule`: precision, tolerance)."""
    return int(is_correct(final_answer(completion, answer_format), answer, answer_type, choices, **rule))


def avg_at_k(scores: Sequence[int]) -> float:
    """Mean correctness over the k samples of one question."""
    if not scores:
        raise ValueError("avg@k of no samples")
    return sum(scores) / len(scores)


def accuracy_reward(
    completions: list, answer: list[str], answer_type: list[str], choices: list | None = None, answer_format: list[str] | None = None, **_: Any
) -> list[float]:
    """TRL reward function (dataset columns arrive as keyword arguments): a `choices` column feeds
    option-text matching, an `answer_format` column names each row's marker (none: the synthetic task's tags)."""
    choices = choices if choices is not None else [()] * len(completions)
    formats = answer_formats(answer_format, len(completions))
    return [
        float(score(completion_text(c), a, t, ch, f))
        for c, a, t, ch, f in zip(completions, answer, answer_type, choices, formats, strict=True)
    ]


def _all_correct_share(keys: Sequence[tuple], correct: Sequence[int]) -> float:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for key, c in zip(keys, correct, strict=True):
        groups[key].append(c)
    return sum(all(g) for g in groups.values()) / len(groups) if groups else float("nan")


def is_uncertain(prediction: str | None) -> bool:
    """An answer that is neither yes nor no ("uncertain", "cannot be determined"). HallusionBench's
    GPT judge calls such answers "unclear"; no extracted answer at all is not counted as one."""
    return prediction is not None and yes_no(prediction) is None


def hallusion_accuracies(metadata: Sequence[dict], correct: Sequence[int], predictions: Sequence[str | None]) -> dict[str, float]:
    """HallusionBench's accuracies as its release computes them (utils.py):

    A VS question asked without its figure (figure 0) is also correct when the answer is uncertain:
    without the visual supplement, not knowing is right (assign_correctness). aAcc: questions
    answered correctly; fAcc: figures (category, subcategory, set, figure) whose questions are all
    correct, leaving out those VS questions; qAcc: question pairs (category, subcategory, set,
    question) correct on every figure.
    """
    def key(m: dict, *names: str) -> tuple:
        return tuple(str(m[n]) for n in ("category", "subcategory", "set_id", *names))

    def no_figure(m: dict) -> bool:
        return m["category"] == "VS" and str(m["figure_id"]) == "0"

    correct = [int(c or (no_figure(m) and is_uncertain(p))) for m, c, p in zip(metadata, correct, predictions, strict=True)]
    figures = [(key(m, "figure_id"), c) for m, c in zip(metadata, correct) if not no_figure(m)]
    return {
        "aAcc": sum(correct) / len(correct),
        "fAcc": _all_correct_share([k for k, _ in figures], [c for _, c in figures]),
        "qAcc": _all_correct_share([key(m, "question_id") for m in metadata], correct),
    }


def wemath_metrics(metadata: Sequence[dict], correct: Sequence[int], predictions: Sequence[str | None]) -> dict[str, float]:
    """We-Math's four dimensions and scores, as its four_dimensional_metrics.py computes them.

    A multi-step problem (`ID`) is judged by its one-step sub-questions ("2steps_1", "2steps_2")
    and the whole ("2steps_multi"): insufficient knowledge (IK) when a sub-question and the whole
    are wrong, inadequate generalisation (IG) when every sub-question is right but the whole is
    wrong, complete mastery (CM) when the whole is right with every (strict) or some (loose)
    sub-question right, rote memorisation (RM) when the whole is right with some (strict) or every
    (loose) sub-question wrong. IK, IG and CM are shares of the problems, RM a share of CM + RM;
    score = (problems - 0.5 IG - RM - IK) / problems. The release's script divides by its 525
    problems; we divide by the complete problems present (525 on the full testmini).
    """
    problems: dict[str, dict[str, int]] = defaultdict(dict)
    for m, c in zip(metadata, correct, strict=True):
        steps, _, part = str(m["key"]).partition("_")
        if steps in ("2steps", "3steps"):
            problems[f"{steps}/{m['ID']}"][part] = c
    counts = defaultdict(int)
    for name, parts in problems.items():
        n = int(name[0])
        if set(parts) != {*map(str, range(1, n + 1)), "multi"}:
            continue
        subs = [parts[str(i)] for i in range(1, n + 1)]
        counts["problems"] += 1
        if parts["multi"]:
            counts["CM_strict"] += all(subs)
            counts["CM_loose"] += any(subs)
            counts["RM_strict"] += not all(subs)
            counts["RM_loose"] += not any(subs)
        else:
            counts["IG"] += all(subs)
            counts["IK"] += not all(subs)
    total = counts["problems"]
    if not total:
        return {}

    def share(part: int, whole: int) -> float:
        return part / whole if whole else float("nan")

    return {
        "IK": share(counts["IK"], total),
        "IG": share(counts["IG"], total),
        "CM_strict": share(counts["CM_strict"], total),
        "CM_loose": share(counts["CM_loose"], total),
        "RM_strict": share(counts["RM_strict"], counts["CM_strict"] + counts["RM_strict"]),
        "RM_loose": share(counts["RM_loose"], counts["CM_loose"] + counts["RM_loose"]),
        "score_strict": (total - 0.5 * counts["IG"] - counts["RM_strict"] - counts["IK"]) / total,
        "score_loose": (total - 0.5 * counts["IG"] - counts["RM_loose"] - counts["IK"]) / total,
    }


def dynamath_metrics(metadata: Sequence[dict], correct: Sequence[int], predictions: Sequence[str | None]) -> dict[str, float]:
    """DynaMath's accuracies as VLMEvalKit's scorer computes them: average over every variant of
    every seed question, and worst case, the share of seed questions right in all their variants."""
    return {
        "average": sum(correct) / len(correct),
        "worst_case": _all_correct_share([(str(m["seed"]),) for m in metadata], correct),
    }


def pope_metrics(metadata: Sequence[dict], correct: Sequence[int], predictions: Sequence[str | None]) -> dict[str, float]:
    """POPE's metrics as its evaluation computes them, per subset (`category`: random, popular,
    adversarial): accuracy, and precision, recall and F1 of answering "yes"; the yes ratio, the
    share of answers that are "yes" (POPE's evaluate.py; lmms-eval's pope_aggregate_yes_ratio counts
    the labels instead, always 0.5). An answer that is neither yes nor no is wrong and counts as
    neither (POPE's script reads every answer without "no"/"not" as yes). `macro_f1` is the mean F1
    over the subsets present: the awesome-perception-aware-rlvr fork's POPE figure (its scorers.py).
    """
    subsets: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for m, p in zip(metadata, predictions, strict=True):
        subsets[str(m["category"])].append((yes_no(p) if p is not None else None, str(m["label"])))
    out: dict[str, float] = {}
    for name, pairs in sorted(subsets.items()):
        tp = sum(p == g == "yes" for p, g in pairs)
        said_yes, is_yes = sum(p == "yes" for p, _ in pairs), sum(g == "yes" for _, g in pairs)
        precision = tp / said_yes if said_yes else 0.0
        recall = tp / is_yes if is_yes else 0.0
        out |= {
            f"{name}/accuracy": sum(p == g for p, g in pairs) / len(pairs),
            f"{name}/precision": precision,
            f"{name}/recall": recall,
            f"{name}/f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            f"{name}/yes_ratio": said_yes / len(pairs),
        }
    out["macro_f1"] = sum(out[f"{name}/f1"] for name in subsets) / len(subsets)
    return out


# Metrics a benchmark's official scorer reports besides question accuracy, by adapter name; each
# takes the rows' metadata, their correctness and the extracted predictions.
ReleaseMetrics = Callable[[Sequence[dict], Sequence[int], Sequence[str | None]], dict[str, float]]
RELEASE_METRICS: dict[str, ReleaseMetrics] = {
    "hallusionbench": hallusion_accuracies,
    "wemath": wemath_metrics,
    "dynamath": dynamath_metrics,
    "pope": pope_metrics,
}
# Benchmarks whose official scorer is an LLM judge: our rule-based accuracy only approximates it.
LLM_JUDGED = ("mathverse", "logicvista")
