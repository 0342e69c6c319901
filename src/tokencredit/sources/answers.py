"""Answers: unwrap \\boxed{}, read option letters and yes/no, infer the answer type of a bare answer."""

from __future__ import annotations

import re

from typing import Any

from tokencredit.rewards import last_boxed
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text
from tokencredit.sources.schema import Item

LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:option|answer|choice)(?:\s+is)?\s*:?\s*", re.IGNORECASE)
ONE_LETTER = re.compile(r"\(?([A-Za-z])\)?")
LETTER_LIST = re.compile(r"\(?[A-Z]\)?(?:(?:\s*(?:,|;|&|\band\b)\s*|\s+)\(?[A-Z]\)?)*")
LETTER_WITH_TEXT = re.compile(r"(?:\(([A-Z])\)|([A-Z])[.:)])\s*\S")
INTEGER = re.compile(r"[+-]?\d+")
NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)")


def unbox(answer: str) -> str:
    """A published answer without its \\boxed{} (ViRL39K stores "\\boxed{60}")."""
    inner = last_boxed(answer)
    return (inner if inner is not None else answer).strip()


def _plain(text: str) -> str:
    return LATEX_TEXT.sub(r"\1", text).strip().rstrip(".").strip()


def option_letters(text: str) -> tuple[str, ...] | None:
    """The option letters a short answer names, sorted, or None when it names none.

    'B', '(B)', 'b', 'B.', '\\text{B}', 'Option B', 'A, C', 'A and C', or one option with its text
    ('B: 45°', '(B) 45').
    """
    plain = PREFIX.sub("", _plain(text))
    one = ONE_LETTER.fullmatch(plain)
    if one:
        return (one[1].upper(),)
    if LETTER_LIST.fullmatch(plain):
        return tuple(sorted(set(re.findall(r"[A-Z]", plain))))
    match = LETTER_WITH_TEXT.match(plain)
    return (match[1] or match[2],) if match else None


def yes_no(text: str) -> str | None:
    """'yes' or 'no' when the answer starts with it ("Yes.", "No, it is not"), else None."""
    words = re.findall(r"[a-z]+", _plain(text).lower())
    return words[0] if words and words[0] in ("yes", "no") else None


def infer_answer_type(answer: str) -> str:
    """Type of a bare published answer: yes_no, integer, number, multiple_choice (letters) or expression."""
    plain = answer.strip()
    if plain.lower() in ("yes", "no"):
        return "yes_no"
    if INTEGER.fullmatch(plain):
        return "integer"
    if NUMBER.fullmatch(plain):
        return "number"
    if LETTER_LIST.fullmatch(plain):
        return "multiple_choice"
    return "expression"


def inferred_item(
    id: str, question: str, answer: str, images: Any, family: str = "", metadata: dict[str, Any] | None = None
) -> Item:
    """An item of a release that publishes bare answers: the answer type is read from the answer
    and, for option letters, the options from the question text."""
    answer_type = infer_answer_type(answer)
    return Item(
        id=id,
        question=question,
        answer=answer,
        answer_type=answer_type,
        images=image_list(images),
        choices=choices_in_text(question) if answer_type == "multiple_choice" else (),
        family=family,
        metadata=metadata or {},
    )
