"""Question text: published image placeholders removed, options listed, options read back from text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tokencredit.sources.schema import BadRow

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IMAGE_TOKEN = re.compile(r"<image\s*\d*>", re.IGNORECASE)
# An option marker: "(A)", "A.", "A:", "A)" at a line start or after whitespace, ";" or ",".
OPTION_MARK = re.compile(r"(?:^|(?<=[\s;,]))(?:\(([A-Z])\)|([A-Z])\s*[.:：)])[ \t]*", re.MULTILINE)


def strip_image_tokens(text: str) -> str:
    """Drop "<image>" / "<image1>" placeholders: the model gets its images as separate inputs."""
    return IMAGE_TOKEN.sub("", text).strip()


def letter(index: int) -> str:
    if not 0 <= index < len(LETTERS):
        raise BadRow(f"option {index + 1} has no letter (at most {len(LETTERS)} options)")
    return LETTERS[index]


def with_choices(question: str, choices: Sequence[str]) -> str:
    """The question followed by its lettered options, the way MathVista's queries list them."""
    if not choices:
        return question
    listed = "\n".join(f"({letter(i)}) {choice}" for i, choice in enumerate(choices))
    return f"{question}\nChoices:\n{listed}"


def choices_in_text(text: str) -> tuple[str, ...]:
    """Option texts listed in `text` ("A: 30°\\nB: 60°", "(A) 10 (B) 12", "A. 1;B. 2"), or () if none.

    Takes the last run of markers A, B, C... in order (at least two); the last option ends at its line.
    """
    marks = [(m[1] or m[2], m.start(), m.end()) for m in OPTION_MARK.finditer(text)]
    for first in reversed(range(len(marks))):
        if marks[first][0] != "A":
            continue
        chain = [marks[first]]
        for mark in marks[first + 1 :]:
            if len(chain) < len(LETTERS) and mark[0] == LETTERS[len(chain)]:
                chain.append(mark)
        if len(chain) >= 2:
            ends = [start for _, start, _ in chain[1:]] + [len(text)]
            texts = [text[end_of_mark:end] for (_, _, end_of_mark), end in zip(chain, ends)]
            texts[-1] = texts[-1].split("\n")[0]
            return tuple(t.strip().rstrip(";,").strip() for t in texts)
    return ()


def letter_of(answer: str, choices: Sequence[str]) -> str:
    """The letter of the option whose text is `answer` (MathVista gives answers as option text)."""
    target = answer.strip()
    for i, choice in enumerate(choices):
        if str(choice).strip() == target:
            return letter(i)
    raise BadRow(f"answer {answer!r} is not one of its choices {list(choices)}")
