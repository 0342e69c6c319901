"""PGPO (Ye et al. 2026): perception-grounded threshold gate with mass conservation.

S_t = vis_k3 with attention to the image masked out (the paper's k3 estimate). Per response:
I_t = min-max of log(1 + S_t); omega_t = I_t / (tau + eps) below tau, 1 + beta (I_t - tau) / (1 - tau + eps)
from tau up; then omega is rescaled so it sums to the response length (`normalize`). A response
whose scores are all equal (e.g. one token, or an image-blind policy's S = 0) has no contrast to
act on and gets weight 1 everywhere; the formula would give it 0/0 (normalized) or 0.
Ablations: suppression-only (tau = 1), boosting-only (tau = 0), normalize = False.
Per response only: no statistic crosses responses, so the process split cannot change a weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import WeightFn, check_range, conserve_mass, register, row_min_max


@register("pgpo", needs=("vis_k3",), counterfactual="mask_visual_attention")
def pgpo(tau: float = 0.4, beta: float = 2.0, eps: float = 1e-8, normalize: bool = True) -> WeightFn:
    check_range("tau", tau, 0.0, 1.0)
    check_range("beta", beta, 0.0)
    check_range("eps", eps, 0.0, low_open=True)

    def weights(signals: TokenSignals, advantages: Tensor) -> Tensor:
        mask = signals.mask
        scores = torch.log1p(signals.require("vis_k3").float().clamp(min=0.0))
        low, high = row_min_max(scores, mask)
        level = (scores - low[:, None]) / (high - low + eps)[:, None]
        omega = torch.where(level < tau, level / (tau + eps), 1.0 + beta * (level - tau) / (1.0 - tau + eps))
        omega = torch.where((high > low)[:, None], omega, 1.0) * mask  # equal scores: no contrast, weight 1
        return conserve_mass(omega, mask) if normalize else omega

    return weights
