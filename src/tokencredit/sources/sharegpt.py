"""Rows in LLaMA-Factory's ShareGPT form, as PAPO-Eval and VPPO-Eval publish their benchmark copies:
`messages` (a user turn with the question, an assistant turn with the bare answer) and `images`
(paths relative to the release). The user turn carries "<image>" placeholders and the papers'
instruction, which are removed: the model gets its images as inputs and prompt.template adds the
instruction (the same sentence with the papers' template), as the awesome-perception-aware-rlvr
fork's loader does (eval/easyr1_eval/loaders.py: strip_sharegpt_question)."""

from __future__ import annotations

import re

from tokencredit.sources.answers import inferred_item
from tokencredit.sources.questions import strip_image_tokens
from tokencredit.sources.schema import BadRow, Item

# The instruction PAPO-Eval and VPPO-Eval append to every question, after "\n\n" or "\n".
PAPERS_INSTRUCTION = re.compile(
    r"\s*You first think through the reasoning process as an internal monologue, enclosed within "
    r"<think> </think> tags\.\s*Then, provide your final answer enclosed within \\boxed\{\}\.?\s*$"
)


def _turn(messages: list, roles: tuple[str, ...]) -> str:
    for message in messages:
        if isinstance(message, dict) and message.get("role", message.get("from")) in roles:
            return str(message.get("content", message.get("value", "")))
    raise BadRow(f"field 'messages' has no {roles[0]} turn")


def sharegpt_item(row: dict, id: str, family: str) -> Item:
    """The item of one ShareGPT row: the bare question, the assistant turn as the answer (its type
    read from it), the row's images."""
    messages = row["messages"]
    if not isinstance(messages, (list, tuple)):
        raise BadRow(f"field 'messages' is a {type(messages).__name__}, not a list of turns")
    question = strip_image_tokens(PAPERS_INSTRUCTION.sub("", _turn(list(messages), ("user", "human"))))
    answer = _turn(list(messages), ("assistant", "gpt")).strip()
    return inferred_item(id, question, answer, row.get("images"), family)
