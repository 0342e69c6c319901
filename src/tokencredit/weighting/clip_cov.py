"""Clip-Cov (Cui et al., "The Entropy Mechanism of RL for Reasoning LMs", arXiv 2505.22617): a control.

Authors' code as merged in verl: volcengine/verl at b178a3cd56f58b2d502255daba591e92833930a7,
verl/trainer/ppo/core_algos.py `compute_policy_loss_clip_cov` (from PRIME-RL/Entropy-Mechanism-of-RL);
defaults clip_cov_ratio 2e-4, clip_cov_lb 1, clip_cov_ub 5.

Per token, the centred covariance term cov_t = (A_i - mean A)(logp_t - mean logp), means over the
batch's valid tokens. Candidates: valid tokens with lb < cov_t < ub. Dropped: max(⌊ratio·N⌋, 1)
of them (all when fewer), drawn uniformly at random; w = 0 on dropped tokens, 1 on the rest.
Their loss multiplies the dropped tokens' terms by 0, which this weighting does exactly.
A sparse selection that reads no visual signal: the second kind of control beside the random
twins (a method that beats uniform GRPO only by damping entropy collapse should also beat it here).

Departures, by construction of a weighting: logp is the rollout policy's (theirs: the current
policy's, equal on the first update of a batch), and tokens the PPO clip already cuts are not
excluded (at the rollout policy the ratio is 1, so none is).
Counterfactual: none. Scope: the global batch (theirs: the micro-batch) for both means and the count.
Ties: none: the drop is a uniform random draw among the candidates, from the step's seeded generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, _ranks, check_range, register


@register(
    "clip_cov", needs=("logp",),
    scope="global batch: both means over every valid token, the count of ratio x valid tokens",
    ties="none: the dropped tokens are a uniform random draw among the candidates, from the step's seeded generator",
)  # fmt: skip
def clip_cov(ratio: float = 0.0002, cov_low: float = 1.0, cov_high: float = 5.0) -> WeightFn:
    check_range("ratio", ratio, 0.0, 1.0, low_open=True)
    if cov_low >= cov_high:
        raise ValueError(f"cov_low={cov_low} must be below cov_high={cov_high}")

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        logp = signals.require("logp").float()
        adv = advantages.float()[:, None].expand_as(logp)
        count = mask.sum().clamp(min=1)
        cov = (adv - (adv * mask).sum() / count) * (logp - (logp * mask).sum() / count)
        candidates = mask & (cov > cov_low) & (cov < cov_high)
        generator = context.tie_generator()
        draw = torch.rand(mask.shape, generator=generator, device=generator.device).to(mask.device)
        n_drop = max(math.floor(ratio * int(mask.sum())), 1)
        dropped = (_ranks(draw.masked_fill(~candidates, -math.inf).flatten(), generator) < n_drop).view(mask.shape) & candidates
        return (mask & ~dropped).float()

    return weights
