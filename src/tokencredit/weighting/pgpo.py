"""PGPO (Ye et al. 2026): perception-grounded threshold gate with mass conservation.

S_t = vis_k3 with attention to the image masked out (the paper's k3 estimate). Per response:
I_t = min-max of log(1 + S_t); omega_t = I_t / (tau + eps) below tau, 1 + beta (I_t - tau) / (1 - tau + eps)
from tau up; then omega is rescaled so it sums to the response length (`normalize`).
Ablations: suppression-only (tau = 1), boosting-only (tau = 0), normalize = False.

Near-constant responses: a response whose scores span at most `flat_rtol` of their largest value
(plus eps) has no contrast to act on and gets weight 1 everywhere (our choice: the formula would
give 0/0, or, for a row of zeros with one token at 1e-9, all the mass to that token). Relative,
so the cut does not depend on the scores' scale, and at least eps, the formula's own noise floor.

Two published forms; the paper does not say which produced its tables:
- the paper's (defaults): tau is an absolute level of I_t, no floor, mass normalisation;
- the authors' development code (method "vig" in Yzk1114/EasyR1 at 6259f02, not linked from the
  paper; params variant `pgpo_authorcode`): `tau_quantile` makes the threshold the response's
  ascending I_t at index floor(L tau) (L its length), weights below it are floored at `floor` =
  0.1, and `normalize` is off.

Counterfactual: `mask_visual_attention`. Scope: per response only; no statistic crosses
responses, so the process split cannot change a weight. Ties: none; a threshold gate gives equal
scores equal weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, check_range, conserve_mass, register, row_min_max


def quantile_threshold(level: Tensor, mask: Tensor, tau: float) -> Tensor:
    """[B, 1]: each response's ascending level at index floor(L tau), at most L - 1 (the development code's τ)."""
    length = mask.sum(1)
    index = torch.minimum((length.float() * tau).long(), (length - 1).clamp(min=0))
    ascending = level.masked_fill(~mask, torch.inf).sort(dim=1).values
    return ascending.gather(1, index[:, None])


@register(
    "pgpo", needs=("vis_k3",), counterfactual="mask_visual_attention",
    scope="per response: min-max and mass over each response's tokens", ties="none: a threshold gate, equal scores get equal weights",
)  # fmt: skip
def pgpo(
    tau: float = 0.4,
    beta: float = 2.0,
    eps: float = 1e-8,
    normalize: bool = True,
    tau_quantile: bool = False,
    floor: float = 0.0,
    flat_rtol: float = 1e-4,
) -> WeightFn:
    check_range("tau", tau, 0.0, 1.0)
    check_range("beta", beta, 0.0)
    check_range("eps", eps, 0.0, low_open=True)
    check_range("floor", floor, 0.0, 1.0)
    check_range("flat_rtol", flat_rtol, 0.0, 1.0)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        scores = torch.log1p(signals.require("vis_k3").float().clamp(min=0.0))
        low, high = row_min_max(scores, mask)
        level = ((scores - low[:, None]) / (high - low + eps)[:, None]).clamp(0.0, 1.0)
        threshold = quantile_threshold(level, mask, tau) if tau_quantile else torch.full_like(high[:, None], tau)
        below = (level / (threshold + eps)).clamp(min=floor)
        omega = torch.where(level < threshold, below, 1.0 + beta * (level - threshold) / (1.0 - threshold + eps))
        flat = high - low <= flat_rtol * high.abs() + eps
        omega = torch.where(flat[:, None], 1.0, omega) * mask
        return conserve_mass(omega, mask) if normalize else omega

    return weights
