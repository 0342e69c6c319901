"""Verifiable-reward building blocks: answer extraction, math equivalence, format and length rewards.

The answer format (`prompt.answer_format`) is what the prompt asks for: `boxed` (the papers'
"<think> ... </think> then \\boxed{}") or `tags` ("<think>...</think><answer>...</answer>", the
synthetic task's). Extraction and the format reward follow it; one format never reads the other's
marker. Correctness per answer type lives in tokencredit.graders, which builds on these.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Literal

from math_verify import parse, verify

AnswerFormat = Literal["boxed", "tags"]
ANSWER_FORMATS: tuple[AnswerFormat, ...] = ("boxed", "tags")
# A split without an `answer_format` column is the synthetic task, which answers in tags.
DEFAULT_ANSWER_FORMAT: AnswerFormat = "tags"
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_END = "</think>"
# PAPO-Eval's and VPPO's reward code remove spaces around "<", ">" and "/" before reading a response
# (Qwen2.5-VL-32B writes "< /think >").
TAG_SPACES = re.compile(r"\s*(<|>|/)\s*")
# Full-response format checks: tags as R1-style templates (the synthetic task's target format), boxed
# as VPPO's and PGPO's format_reward (VPPO-RL examples/reward_function/math.py, after TAG_SPACES).
FORMATS: dict[str, re.Pattern[str]] = {
    "tags": re.compile(r"<think>.*</think>(<rethink>.*</rethink>)?<answer>.*</answer>", re.DOTALL),  # GRIT's <rethink>: data.target_style grounded
    "boxed": re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL),
}


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, with balanced braces; None if absent or unclosed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    begin = start + len("\\boxed{")
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i]
            depth -= 1
    return None


def final_answer(text: str, answer_format: AnswerFormat) -> str | None:
    """The answer a response gives: the content of the last marker of `answer_format` (the last
    \\boxed{...}, or the last <answer>...</answer>) after the last </think>; None when there is none.

    A marker inside the thinking never counts once the thinking is closed ("<think>maybe
    <answer>3</answer></think> \\boxed{5}" answers 5 when boxed, nothing when tags). A response
    without </think> is read whole, as PAPO-Eval reads every response (the last \\boxed{} anywhere;
    it ignores </think>, so with </think> it would also take a box from inside the thinking, which
    we do not). Spaces around "<", ">" and "/" are removed first, as PAPO-Eval does.
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {answer_format!r} (known: {', '.join(ANSWER_FORMATS)})")
    text = TAG_SPACES.sub(r"\1", text)
    _, closed, after = text.rpartition(THINK_END)
    region = after if closed else text
    if answer_format == "boxed":
        inner = last_boxed(region)
    else:
        tags = ANSWER_TAG.findall(region)
        inner = tags[-1] if tags else None
    return inner.strip() if inner is not None else None


def _normalize(text: str) -> str:
    return " ".join(text.strip().strip(".").lower().split())


def math_equal(prediction: str, answer: str) -> bool:
    """Same text once normalised, else equivalent for math-verify, both read as LaTeX math.

    Wrapped in $…$ on purpose: bare, math-verify reads only a leading number ("2\\sqrt{3}" as 2).
    """
    if _normalize(prediction) == _normalize(answer):
        return True
    # math-verify times out with SIGALRM, which only the main thread may set.
    limit = 5 if threading.current_thread() is threading.main_thread() else None
    gold = parse(f"${answer.strip().strip('$')}$", parsing_timeout=limit)
    pred = parse(f"${prediction.strip().strip('$')}$", parsing_timeout=limit)
    return bool(gold and pred and verify(gold, pred, timeout_seconds=limit))


def completion_text(completion: str | list[dict]) -> str:
    """Text of a TRL completion: a string, or a conversational list whose last message is the answer."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, list):  # multimodal message: join its text parts
        return "".join(part.get("text", "") for part in content)
    return content


def answer_formats(answer_format: Sequence[str] | None, n: int) -> list[str]:
    """A reward function's `answer_format` column (TRL passes dataset columns as keyword
    arguments), or the synthetic task's format for each of `n` completions when there is none."""
    return list(answer_format) if answer_format is not None else [DEFAULT_ANSWER_FORMAT] * n


def is_formatted(text: str, answer_format: AnswerFormat) -> bool:
    """Whether the whole response has the format the prompt asks for: "<think>...</think>" then
    "<answer>...</answer>" (tags, nothing around), or then a \\boxed{} (boxed, VPPO's check after its
    TAG_SPACES rule)."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {answer_format!r} (known: {', '.join(ANSWER_FORMATS)})")
    text = text.strip()
    return bool(FORMATS[answer_format].fullmatch(TAG_SPACES.sub(r"\1", text) if answer_format == "boxed" else text))


def format_reward(completions: list, answer_format: Sequence[str] | None = None, **_) -> list[float]:
    """TRL reward function: 1 for a response in its row's answer format (`answer_format` column)."""
    formats = answer_formats(answer_format, len(completions))
    return [float(is_formatted(completion_text(c), f)) for c, f in zip(completions, formats, strict=True)]


def overlong_penalty(lengths: list[int], max_len: int, cache: int) -> list[float]:
    """DAPO overlong reward shaping: 0 up to max_len - cache tokens, then linear down to -1 at max_len, -1 beyond."""
    if not 0 < cache <= max_len:
        raise ValueError(f"overlong cache {cache} must be in [1, max_len={max_len}]")
    soft = max_len - cache
    return [0.0 if n <= soft else (soft - n) / cache if n <= max_len else -1.0 for n in lengths]
