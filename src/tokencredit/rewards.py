"""Verifiable-reward building blocks: answer extraction, math equivalence, format and length rewards.

Correctness per answer type lives in tokencredit.graders, which builds on these."""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
FORMAT = re.compile(r"^<think>.*</think><answer>.*</answer>$", re.DOTALL)


def _last_boxed(text: str) -> str | None:
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


def extract_answer(text: str) -> str | None:
    """Content of the last <answer>...</answer>, else of the last \\boxed{...}, else None."""
    tags = ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    boxed = _last_boxed(text)
    return boxed.strip() if boxed is not None else None


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


def format_reward(completions: list, **kwargs) -> list[float]:
    return [float(bool(FORMAT.match(completion_text(c).strip()))) for c in completions]


def overlong_penalty(lengths: list[int], max_len: int, cache: int) -> list[float]:
    """DAPO overlong reward shaping: 0 up to max_len - cache tokens, then linear down to -1 at max_len, -1 beyond."""
    if not 0 < cache <= max_len:
        raise ValueError(f"overlong cache {cache} must be in [1, max_len={max_len}]")
    soft = max_len - cache
    return [0.0 if n <= soft else (soft - n) / cache if n <= max_len else -1.0 for n in lengths]
