"""GRIT as the awesome-perception-aware-rlvr fork's controlled comparison rewards it (its
examples/comparison/README.md at 119b93f: "grit.sh ... grit.py:compute_score (format, box format,
rule-based answer, 0.1·BLEU-1)"; the fork's examples/reward_function/grit.py @ e98dfb9, `compute_score`,
with `parse_json_grounding_regions` of verl/trainer/perception_reasoning_data.py). Unlike the
released GRIT rewards (reward_sets/grit.py), its evidence is JSON, as its system prompt
(examples/system_prompt/grit_GR.txt) asks: {"label": "...", "bbox_list": [[x1, y1, x2, y2], ...]}
with integer coordinates in 0-1000.

- structure: 0.5 when <think> and </think> each occur once, in order; 0.5 the same for <rethink>.
- boxes (before the first <rethink>): 0.25 for a raw box "x1, y1, x2, y2"; 0.25 for at least one
  evidence object that parses: a JSON object (or a list of them) with a non-empty `label`, an
  `image_idx` (default 0) below the row's image count, and a `bbox_list` holding at least one box of
  four integers (integral floats accepted, booleans not) with 0 <= x1 < x2 <= 1000, 0 <= y1 < y2 <= 1000.
- accuracy: the task's grader (theirs: mathruler's grade_answer on the first <answer>...</answer>; ours
  reads the last one after </think> and grades by the item's answer type, as every method is graded).
- bleu: 0.1 · BLEU-1 of the first <answer>...</answer>'s content against the answer (nltk, words of
  letters and digits, lower-cased), 0 without one; the released GRIT reads everything after <answer>.
All weights 1 (their "overall" is the plain sum). `tests/test_grit.py` pins structure, boxes and bleu
to the numbers their functions give on fixed responses.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tokencredit.graders import accuracy_reward
from tokencredit.reward_sets import RewardSet, register_reward_set
from tokencredit.reward_sets.grit import RAW_BOX, before_rethink, bleu1
from tokencredit.rewards import ANSWER_TAG, completion_text


def _once_in_order(text: str, opening: str, closing: str) -> bool:
    return text.count(opening) == 1 and text.count(closing) == 1 and text.find(opening) < text.find(closing)


def grit_fork_structure(completions: list, **_: Any) -> list[float]:
    texts = [completion_text(c) for c in completions]
    return [0.5 * _once_in_order(t, "<think>", "</think>") + 0.5 * _once_in_order(t, "<rethink>", "</rethink>") for t in texts]


def _json_values(text: str) -> list[Any]:
    """Every JSON value that starts at a "{" or "[" of the text, left to right, each read whole."""
    decoder, values, start = json.JSONDecoder(), [], 0
    while (starts := [i for i in (text.find("{", start), text.find("[", start)) if i != -1]):
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            start += 1
            continue
        values.append(value)
        start += max(end, 1)
    return values


def _valid_box(box: Any) -> bool:
    if not isinstance(box, list) or len(box) != 4:
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and math.isfinite(v) and v.is_integer() for v in box):
        return False
    x1, y1, x2, y2 = box
    return all(0 <= v <= 1000 for v in box) and x1 < x2 and y1 < y2


def _is_evidence(item: Any, n_images: int | None) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not item["label"].strip():
        return False
    image = item.get("image_idx", 0)
    if isinstance(image, bool) or not isinstance(image, int) or image < 0 or (n_images is not None and image >= n_images):
        return False
    boxes = item.get("bbox_list")
    return isinstance(boxes, list) and any(_valid_box(box) for box in boxes)


def has_evidence(text: str, n_images: int | None = None) -> bool:
    """An evidence object that parses (the fork's parse_json_grounding_regions finds a region)."""
    return any(
        _is_evidence(item, n_images) for value in _json_values(text) for item in ([value] if isinstance(value, dict) else value if isinstance(value, list) else [])
    )


def grit_fork_boxes(completions: list, images: list | None = None, **_: Any) -> list[float]:
    counts = [len(own) for own in images] if images is not None else [None] * len(completions)

    def boxes(text: str, n_images: int | None) -> float:
        before = before_rethink(text)
        return 0.25 * bool(RAW_BOX.search(before)) + 0.25 * has_evidence(before, n_images)

    return [boxes(completion_text(c), n) for c, n in zip(completions, counts, strict=True)]


def grit_fork_bleu(completions: list, answer: list[str], **_: Any) -> list[float]:
    def bleu(text: str, truth: str) -> float:
        match = ANSWER_TAG.search(text)  # the first, as theirs
        return 0.1 * bleu1(match[1].strip(), truth) if match else 0.0

    return [bleu(completion_text(c), a) for c, a in zip(completions, answer, strict=True)]


@register_reward_set("grit_fork")
def grit_fork() -> RewardSet:
    funcs = (accuracy_reward, grit_fork_bleu, grit_fork_structure, grit_fork_boxes)
    return RewardSet(funcs=funcs, weights=(1.0,) * len(funcs), target_style="grounded", prompt_asks="<rethink>")
