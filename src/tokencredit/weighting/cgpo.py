"""CGPO's token part (Zhang et al., "CGPO: Counterfactual Grounding Policy Optimization", ACM MM 2026).

The official code is the third-party fork itself: zsxm1998/awesome-perception-aware-rlvr at
160666da5d81cbe043d31e63fba6862187df8177, verl/trainer/perception_reasoning_loss.py
(`_compute_cgpo_advantage_shaping_context_from_scores`, `_compute_cgpo_response_scaling`,
`_compute_advantage_scaling` for "cgpo", the union mask of `compute_perception_reasoning_policy_loss`),
verl/trainer/visual_sensitivity.py (`compute_response_mean_scores`); defaults from
examples/reproduction/cgpo/common.sh (λ 0.1, ρ_r = ρ_p = 0.3, both sets over the batch).

S_t = vis_k3 (their sampled_low_var_kl with the rollout policy as reference); S_i = mean_t S_t;
over the batch's responses, a robust z-score z_i = (S_i - median S) / (MAD S + 1e-8) and
α_i = 1 + λ tanh(z_i). Perception set T_p: top ρ_p of the batch's tokens by S_t; reasoning set
T_r: top ρ_r by entropy. w = α_i on T_p (also where T_r overlaps it), 1 on T_r \\ T_p, 0 elsewhere.
With fewer than two responses the median and MAD are undefined: α = 1 (theirs: an error).

Not here: CGPO's counterfactual masks the evidence regions the policy names in its grounded chain
of thought (each filled with its local mean colour), plus those region tokens joining T_p and a
grounding-consistency reward; our task's responses name no regions, so the counterfactual is
`gray` (the whole image flattened, what their fill does to an image-wide region), a substitute.
Counterfactual: `gray` (substitute, above). Scope: global batch for both top-ρ sets and the
median/MAD. Ties: random among equal scores, from the step's seeded generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, batch_top_fraction, check_range, register


def robust_scale(scores: Tensor, mask: Tensor, coef: float) -> Tensor:
    """alpha [B] = 1 + coef tanh((S_i - median) / (MAD + 1e-8)), S_i the response means; 1 without two responses."""
    length = mask.sum(1)
    has = length > 0
    mean = (scores * mask).sum(1) / length.clamp(min=1)
    alpha = torch.ones_like(mean)
    if has.sum() > 1:
        valid = mean[has]
        median = valid.median()
        mad = (valid - median).abs().median()
        alpha[has] = 1.0 + coef * torch.tanh((valid - median) / (mad + 1e-8))
    return alpha


@register("cgpo", needs=("entropy", "vis_k3"), counterfactual="gray", scope="global batch: both top-ρ sets and the median/MAD of the response scores")
def cgpo(rho_r: float = 0.3, rho_p: float = 0.3, coef: float = 0.1) -> WeightFn:
    check_range("rho_r", rho_r, 0.0, 1.0)
    check_range("rho_p", rho_p, 0.0, 1.0)
    check_range("coef", coef, 0.0)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask, generator = signals.mask, context.tie_generator()
        scores = signals.require("vis_k3").float()
        reasoning = batch_top_fraction(signals.require("entropy"), mask, rho_r, generator)
        perception = batch_top_fraction(scores, mask, rho_p, generator)
        alpha = robust_scale(scores, mask, coef)[:, None].expand_as(scores)
        return torch.where(perception, alpha, reasoning.float())

    return weights
