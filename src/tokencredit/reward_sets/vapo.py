"""VAPO's rewards (Tian et al., "More Thought, Less Accuracy? On the Dual Nature of Reasoning in
Vision-Language Models", ICLR 2026, arXiv 2509.25848; xytian1008/VAPO @ 67687cf,
examples/reward_function/vapo.py `compute_score`, weights as its defaults format_weight = anchor_weight = 0.1):

    reward = 0.8 · accuracy + 0.1 · format + 0.1 · 1[accuracy = 1] · perception

perception is the score of K claim probes of the response (tokencredit.claim_probes: K = 20 cuts of
the reasoning, one claim about the image asked at each, answered by the policy being trained with
one greedy token; late cuts weigh more, β = 1.5). It needs the data's `claims` column
(data.claims_per_image on the synthetic task) and a policy that answers the probes (the tiny
model learns to from sft.claim_probe_fraction). Accuracy and format are the task's grader and format
check (the released code checks `<think>...</think>...\\boxed{}`: the task's `boxed` format).

As the fork's reproduction, only correct responses are probed: the score enters only their reward,
so every reward is what probing all responses gives, at a fraction of the forwards. With DAPO's
dynamic sampling the probes run in every generation round, before the filter, which so sees the
perception reward, as the released script's filter on the overall reward does.

Note: the released trainer (verl/trainer/ray_trainer.py @ 67687cf) has its call of `generate_anchors`
commented out, so `compute_score` never receives anchors and the released code trains on
0.9 · accuracy + 0.1 · format; this follows the paper and the released functions as they would run.
"""

from __future__ import annotations

from typing import Any

from tokencredit.claim_probes import answered_right, draw_probes, parse_claims, perception_score
from tokencredit.graders import accuracy_reward
from tokencredit.reward_sets import PolicyReward, RewardSet, register_reward_set
from tokencredit.rewards import completion_text, format_reward


class ClaimProbeReward(PolicyReward):
    """VAPO's perception reward: each correct response's probe score (0 for the others)."""

    def __init__(self, probes: int, late_emphasis: float) -> None:
        self.probes = probes
        self.late_emphasis = late_emphasis
        self.__name__ = "vapo_perception"  # TRL logs a reward function under its __name__

    def __call__(self, completions: list, claims: list[str], question: list[str], images: list, **columns: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        own = [parse_claims(cell) for cell in claims]
        # A row without claims (VAPO's data has none for multi-image problems) is not probed: 0, as a wrong one.
        correct = [i for i, a in enumerate(accuracy_reward(completions, **columns)) if a == 1.0 and len(own[i]) >= self.probes]
        scores = [0.0] * len(texts)
        drawn = draw_probes([texts[i] for i in correct], [own[i] for i in correct], self.probes, self.policy.probe_rng)
        # Asked even without correct responses: every process must enter the policy's gathers alike.
        rights = answered_right(self.policy.claim_answers, [question[i] for i in correct], [images[i] for i in correct], drawn)
        for i, probes, right in zip(correct, drawn, rights):
            scores[i] = perception_score(right, probes.cuts, len(texts[i]), self.late_emphasis)
        return scores


@register_reward_set("vapo")
def vapo(probes: int = 20, late_emphasis: float = 1.5, format_weight: float = 0.1, perception_weight: float = 0.1) -> RewardSet:
    """probes: K, the cuts per response (the released 7B script's ANCHOR_K 20); late_emphasis: β of Eq. 4;
    format_weight, perception_weight: compute_score's weights (accuracy gets the rest)."""
    funcs = (accuracy_reward, format_reward, ClaimProbeReward(probes, late_emphasis))
    return RewardSet(funcs=funcs, weights=(1.0 - format_weight - perception_weight, format_weight, perception_weight), columns=("claims",))
