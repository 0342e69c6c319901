"""VAPO's visual claim probes (Tian et al., "More Thought, Less Accuracy? On the Dual Nature of
Reasoning in Vision-Language Models", ICLR 2026, arXiv 2509.25848; xytian1008/VAPO @ 67687cf).

A response is cut at K random punctuation marks of its reasoning ("visual anchors"); at each cut the
policy reads the prompt, the response up to and including the cut and one claim about the image,
asked as a Yes/No question, and answers with one greedy token. The perception score is the share of
right answers weighted toward later cuts, chance mapped to 0 (reward_sets/vapo.py adds it to the
reward of correct responses). The cut and draw rules follow the released functions
(verl/workers/rollout/vllm_rollout_spmd.py: `_extract_think_part`, `_find_cutoff_positions`,
`_sample_k_positions`, `generate_anchors`; examples/reward_function/vapo.py: `anchor_reward`), and
tests/test_vapo.py pins them to those functions' outputs on fixed inputs and generator states.

Where this differs from the released code, on purpose:
- An answer is right when it matches the label of the claim asked. The released code compares the
  probe of claim `chosen_indices[j]` with `label_{j+1}`, the label of another claim (a bug: the
  perception score is then chance whatever the policy sees); the fork's reproduction
  (zsxm1998/awesome-perception-aware-rlvr, examples/reproduction/vapo/README.md) compares with the
  claim's own label too.
- The question ends without the released trailing space (`Answer (Yes/No):`), as the fork's controlled
  comparison asks it: after the space Qwen answers with the digit candidates (its measurements there).
- The reasoning also ends at "<answer>" (the fork's rule, between the released "</think>" and "\\boxed"),
  so that a response in the synthetic task's tags without "</think>" is never cut inside its answer.
- The released search window loses its last 128 characters when prompt + response exceed 6,000 tokens,
  to keep vLLM's probe inside its context; probes here are forwards with no such limit, so it is not applied.
- The generator is seeded (the trainer's, per step and process); the released one is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

SEPARATORS = frozenset(",.\n!?;:")
MIN_SEPARATION = 2  # characters between two cuts
QUESTION = "\n<anchor>{claim} Is this claim correct? Answer (Yes/No):"
# The released candidates (fsdp_workers.py, `generate_anchors`' allowed_token_ids, Qwen's ids of these words).
YES_WORDS = ("yes", "Yes", "True", "true", "1")
NO_WORDS = ("0", "no", "No", "false", "False")
# What the SFT mixture teaches the tiny model to answer (sft.claim_probe_fraction).
YES, NO = "Yes", "No"
REASONING_ENDS = ("</think>", "<answer>", "\\boxed")  # the first found ends the reasoning


def reasoning_part(response: str) -> str:
    """The text before "</think>"; else before "<answer>"; else before "\\boxed"; else all of it."""
    for end in REASONING_ENDS:
        if end in response:
            return response[: response.find(end)]
    return response


def cut_positions(reasoning: str) -> np.ndarray:
    """Character positions of the separators of `reasoning`, each at least MIN_SEPARATION after the previous cut."""
    cuts, last = [], -MIN_SEPARATION - 1
    for pos, char in enumerate(reasoning):
        if char in SEPARATORS and pos - last >= MIN_SEPARATION:
            cuts.append(pos)
            last = pos
    return np.array(cuts, dtype=np.int32)


def sample_cuts(positions: np.ndarray, k: int, rng: np.random.Generator, fallback: int) -> np.ndarray:
    """K sorted cuts drawn without replacement; with fewer positions all of them, the last repeated;
    with none, K times `fallback` (the response's last character)."""
    if len(positions) == 0:
        return np.full(k, fallback, dtype=np.int32)
    if k <= len(positions):
        return np.sort(rng.choice(positions, size=k, replace=False))
    return np.sort(np.concatenate([positions, np.full(k - len(positions), positions[-1], dtype=np.int32)]))


@dataclass(frozen=True)
class ResponseProbes:
    texts: list[str]  # the response up to each cut, then the question of one claim
    labels: list[bool]  # whether each claim asked is true
    cuts: np.ndarray  # character position of each cut


def draw_probes(responses: list[str], claims: list[list[tuple[str, bool]]], k: int, rng: np.random.Generator) -> list[ResponseProbes]:
    """K probes of each response, each asking a different claim of its row. In the released order of
    draws: every response's cuts, then every response's claims (so a batch draws what theirs draws)."""
    cuts = [sample_cuts(cut_positions(reasoning_part(r)), k, rng, fallback=len(r) - 1) for r in responses]
    chosen = [rng.choice(len(own), size=k, replace=False) for own in claims]
    return [
        ResponseProbes(
            texts=[r[: cut + 1] + QUESTION.format(claim=own[c][0]) for cut, c in zip(at, picks)],
            labels=[bool(own[c][1]) for c in picks],
            cuts=at,
        )
        for r, own, at, picks in zip(responses, claims, cuts, chosen, strict=True)
    ]


def perception_score(right: np.ndarray, cuts: np.ndarray, response_length: int, late_emphasis: float = 1.5) -> float:
    """VAPO's Eq. 4 as released (`anchor_reward`): the share of right answers weighted by
    exp(β · cut / length), mapped from [0.5, 1] to [0, 1] (chance and below: 0); 0 without probes."""
    if len(right) == 0:
        return 0.0
    weights = np.exp(late_emphasis * np.asarray(cuts) / response_length)
    share = float(np.sum(np.asarray(right) * weights) / np.sum(weights))
    return max((share - 0.5) / 0.5, 0.0)


def answered_right(answer: Any, questions: list[str], images: list, drawn: list[ResponseProbes]) -> list[np.ndarray]:
    """Whether each probe of each response is answered right by `answer(questions, images, texts)` (one
    call for all, each response's question and images repeated for its probes)."""
    sizes = [len(p.texts) for p in drawn]
    answers = answer(
        [q for q, n in zip(questions, sizes) for _ in range(n)], [i for i, n in zip(images, sizes) for _ in range(n)], [t for p in drawn for t in p.texts]
    )
    ends = np.cumsum(sizes)
    return [np.array(answers[end - n : end]) == np.array(p.labels) for p, n, end in zip(drawn, sizes, ends)]


def probe_corpus(claims: list[list[tuple[str, bool]]]) -> list[str]:
    """Every claim asked and answered: tokenizer text, so that the tiny model's tokenizer knows the probes."""
    return [QUESTION.format(claim=text) + (YES if label else NO) for own in claims for text, label in own]


def parse_claims(cell: str) -> list[tuple[str, bool]]:
    """A `claims` cell (JSON [[claim, label], ...]) as pairs."""
    return [(str(text), bool(label)) for text, label in json.loads(cell)]


def single_token_ids(tokenizer: Any, words: tuple[str, ...] | list[str]) -> list[int]:
    """The ids of those `words` the tokenizer encodes as one token (the released candidates are one
    Qwen token each); an error when none is."""
    ids = [encoded[0] for encoded in (tokenizer(w, add_special_tokens=False)["input_ids"] for w in words) if len(encoded) == 1]
    if not ids:
        raise ValueError(f"the tokenizer encodes none of {list(words)} as one token: claim probes need a one-token answer")
    return ids


def policy_answers(model: Any, processor: Any, questions: list[str], images: list, texts: list[str], batch_size: int) -> list[bool]:
    """The model's greedy token after each prompt (question, images) and assistant text, among the
    released yes and no candidates (YES_WORDS, NO_WORDS): True for yes."""
    import torch  # this module also serves data preparation, which needs no torch

    from tokencredit.batching import encode_prompts

    yes = single_token_ids(processor.tokenizer, YES_WORDS)
    candidates = torch.tensor(yes + single_token_ids(processor.tokenizer, NO_WORDS), device=model.device)
    answers: list[bool] = []
    for start in range(0, len(texts), batch_size):
        rows = slice(start, start + batch_size)
        batch = encode_prompts(processor, questions[rows], images[rows], texts[rows]).to(model.device)
        with torch.no_grad():
            logits = model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1]
        answers += [int(t) in yes for t in candidates[logits[:, candidates].argmax(dim=-1)]]
    return answers
