"""VPPO (Huang et al., ICLR 2026): visual-dependency gating and trajectory advantage shaping.

S_t = vis_k3, the sampled-token KL estimate under patch blackening (as in the authors' code).
TGF: per response keep the top `k` of tokens by S_t. TAS: scale response i by
alpha_i = beta_min + n_i (beta_max - beta_min), where n_i is the response's mean S min-max
normalised over the batch and beta_max = beta_min + (1 - beta_min) / mean(n), so mean alpha = 1;
alpha = 1 when the batch's mean scores span <= 1e-6. w = alpha_i on kept tokens, 0 elsewhere.
Responses without valid tokens take no part in the batch statistics.
Batch-wide: TAS's min/max and mean are over the global batch of a training step, over all
processes; TGF is per response.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import WeightFn, check_range, register, row_top_fraction


def trajectory_scale(scores: Tensor, mask: Tensor, beta_min: float) -> Tensor:
    """TAS alpha [B]; mean over responses with valid tokens is 1."""
    length = mask.sum(1)
    has = length > 0
    mean = (scores * mask).sum(1) / length.clamp(min=1)
    alpha = torch.ones_like(mean)
    if not has.any():
        return alpha
    low, high = mean[has].min(), mean[has].max()
    if high - low <= 1e-6:
        return alpha
    n = ((mean - low) / (high - low)).clamp(0.0, 1.0)
    mu = n[has].mean()
    beta_max = beta_min + (1.0 - beta_min) / (mu + 1e-8)
    return beta_min + n * (beta_max - beta_min)


@register("vppo", needs=("vis_k3",), counterfactual="patch_blackening")
def vppo(k: float = 0.4, beta_min: float = 0.9) -> WeightFn:
    check_range("k", k, 0.0, 1.0, low_open=True)
    check_range("beta_min", beta_min, 0.0, 1.0)

    def weights(signals: TokenSignals, advantages: Tensor) -> Tensor:
        mask = signals.mask
        scores = signals.require("vis_k3").float()
        kept = row_top_fraction(scores, mask, k).float()
        return trajectory_scale(scores, mask, beta_min)[:, None] * kept

    return weights
