"""GRIT's grounded-reasoning rewards (Fan et al., "GRIT: Teaching MLLMs to Think with Images",
arXiv 2505.15879; eric-ai-lab/GRIT @ 44699c9, grpo-gr/rewards.py, its "think_rethink" setting as
GRPO_GR.py registers it: every term with weight 1).

GRIT trains a model to interleave its reasoning with boxes: "<think> ... [x1,y1,x2,y2] ... </think>
<rethink> ... </rethink> <answer> ... </answer>", rewarded for the format and the answer only (no
box is compared with a ground-truth box). Its terms, as the authors' functions compute them:

- accuracy (their `gpt_score_reward`, a GPT-4o judgement): the task's grader here, as the fork's
  reproduction replaces the judge by a rule (awesome-perception-aware-rlvr, examples/reward_function/grit.py).
- bleu (`bleu_score_reward`): 0.1 · BLEU-1 (nltk's sentence_bleu, the authors' call) of everything after
  the first "<answer>" (the closing tag's word included, as theirs) against the answer.
- answer_format (`answer_format_reward`): 0.25 when "<answer>" occurs, 0.5 when exactly once.
- think_rethink (`think_and_rethink_format_reward`): <think>, </think>, <rethink>, </rethink> looked for
  in order, each after the last occurrence of the previous one, one point each, a fifth point when all
  four are there and the thinking holds two words; 0.5 · points / 5.
- grounded (`grounded_region_specific_thinking_format_reward_think_rethink`): 0 without "<rethink>";
  else 0.5 when a box "x1, y1, x2, y2" is written before it, + 1 when the question counts (their
  TallyQA rows; here the counting families, `COUNTING_FAMILIES`) and the number of boxes is the answer.
- repetition (`repetitive_reward`): 0.5 · (s_ids − (1 − s_words)), where s_words / s_ids are 1 − the
  share of 8-grams of words / token ids followed by the same 8-gram; 0.5 when shorter than one word
  8-gram or two id 8-grams. TRL passes unpadded completion ids, so their cut at Qwen's pad id is moot.

Their first batch row's dataset decides the counting bonus for the whole batch; here each row's
family does (the same on a one-family batch). `tests/test_grit.py` pins every term to the numbers the
authors' functions give on fixed completions.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from tokencredit.graders import accuracy_reward
from tokencredit.reward_sets import RewardSet, register_reward_set
from tokencredit.rewards import completion_text

# GRIT's counting bonus is for TallyQA, a counting set: the synthetic task's counting families.
COUNTING_FAMILIES = frozenset({"count_color", "count_shape"})
RAW_BOX = re.compile(r"\b\d+,\s*\d+,\s*\d+,\s*\d+\b")
NON_ALNUM = re.compile(r"[^a-zA-Z0-9\s]")
THINK_TAGS = ("<think>", "</think>", "<rethink>", "</rethink>")
NGRAM = 8


def _texts(completions: list) -> list[str]:
    return [completion_text(c) for c in completions]


def before_rethink(text: str) -> str:
    """The text before the first <rethink> (all of it without one): where GRIT looks for boxes."""
    return text.split("<rethink>", 1)[0]


def bleu1(prediction: str, truth: str) -> float:
    """BLEU-1 (nltk's sentence_bleu, the authors' call) of the prediction's words against the truth's:
    letters and digits, lower-cased; 0 when either has none."""
    from nltk.translate.bleu_score import sentence_bleu

    predicted, reference = NON_ALNUM.sub(" ", prediction).lower().split(), NON_ALNUM.sub(" ", truth).lower().split()
    if not predicted or not reference:
        return 0.0
    with warnings.catch_warnings():  # nltk warns of zero 2- to 4-gram counts although their weights are 0
        warnings.filterwarnings("ignore", category=UserWarning, module=r"nltk\.translate\.bleu_score")
        return sentence_bleu([reference], predicted, weights=(1, 0, 0, 0))


def grit_bleu(completions: list, answer: list[str], **_: Any) -> list[float]:
    texts = _texts(completions)
    return [0.1 * bleu1(t.split("<answer>", 1)[1], a) if "<answer>" in t else 0.0 for t, a in zip(texts, answer, strict=True)]


def grit_answer_format(completions: list, **_: Any) -> list[float]:
    return [0.0 if "<answer>" not in t else 0.5 if t.count("<answer>") == 1 else 0.25 for t in _texts(completions)]


def grit_think_rethink(completions: list, **_: Any) -> list[float]:
    def points(text: str) -> int:
        found, rest = 0, text
        for tag in THINK_TAGS:
            if tag in rest:
                found += 1
                rest = rest.split(tag)[-1]
        if found < len(THINK_TAGS):
            return found
        thinking = text.split("<think>")[-1].split("</think>")[0].strip()
        return found + int(len(thinking) > 1 and len(NON_ALNUM.sub(" ", thinking).split(" ")) > 1)

    return [0.5 * points(t) / (len(THINK_TAGS) + 1) for t in _texts(completions)]


def grit_grounded(completions: list, answer: list[str], family: list[str] | None = None, **_: Any) -> list[float]:
    families = family if family is not None else [None] * len(completions)

    def grounded(text: str, truth: str, kind: str | None) -> float:
        if "<rethink>" not in text:
            return 0.0
        boxes = RAW_BOX.findall(before_rethink(text))
        return 0.5 * bool(boxes) + float(kind in COUNTING_FAMILIES and len(boxes) == int(truth))

    return [grounded(t, a, k) for t, a, k in zip(_texts(completions), answer, families, strict=True)]


def _repeat_free_share(items: list, pairs: int) -> float:
    """1 − the share of the first `pairs` n-grams equal to the n-gram right after them (1 without pairs)."""
    repeats = sum(tuple(items[i : i + NGRAM]) == tuple(items[i + NGRAM : i + 2 * NGRAM]) for i in range(pairs))
    return 1.0 - repeats / pairs if pairs > 0 else 1.0


def grit_repetition(completions: list, completion_ids: list[list[int]], **_: Any) -> list[float]:
    def repetition(text: str, ids: list[int]) -> float:
        words = text.split()
        if len(words) < NGRAM or len(ids) < 2 * NGRAM:
            return 0.5
        # Their word loop stops one pair early (range(len - n)); their id loop does not (range(len - 2n + 1)).
        return 0.5 * (_repeat_free_share(ids, len(ids) - 2 * NGRAM + 1) - (1.0 - _repeat_free_share(words, len(words) - NGRAM)))

    return [repetition(t, list(i)) for t, i in zip(_texts(completions), completion_ids, strict=True)]


@register_reward_set("grit")
def grit() -> RewardSet:
    funcs = (accuracy_reward, grit_bleu, grit_answer_format, grit_repetition, grit_grounded, grit_think_rethink)
    return RewardSet(funcs=funcs, weights=(1.0,) * len(funcs), target_style="grounded", prompt_asks="<rethink>")
