"""VGPO (arXiv 2604.09349): visually guided token and trajectory reweighting of the advantage.

Authors' code: wzb-bupt/VGPO at d773c71d6c31a1019a4ec663474e080d134c6dd2,
verl/workers/actor/dp_actor.py (`_compute_visual_attention_weights`, `_compute_visual_compensation_factor`,
the intra-trajectory block of `update_policy`) and verl/trainer/core_algos.py
(`compute_trajectory_visual_weighting`); defaults from train_vgpo_7B.sh (β 0.3, γ 0.5, κ 0.2).

- w_t: `hidden_sim_last` (cosine of token t's final hidden state with the image tokens' mean),
  min-max normalised over every valid token of the rows given (range + 1e-8).
- Eq. 5-6, tail boost: c_t = β (t - t_first) / (t_last - t_first + 1e-8) over each response's valid
  positions; the gate G_t is 1 on the top max(1, ⌊κ·m⌋) of w among the response's last
  m = n - ⌊γ·n⌋ tokens (ties at the threshold included), 0 elsewhere; w'_t = w_t (1 + G_t c_t).
- Eq. 7-8, intra-response: ŵ = per-response min-max of w' (range + 1e-8);
  ψ_t = clamp(1 + ŵ_t - mean_t ŵ, 0.1, 2.0).
- Eq. 9-11, group level: φ_i = Σ_t ŵ_t; within a pool, min-max of φ (range + 1e-8), then
  α_i = clamp(1 + φ̂_i - mean φ̂, 0.9, 2.0).
w_{i,t} = α_i ψ_{i,t}.

Our choices where the code departs from the paper or depends on its batching:
- the global min-max spans the valid tokens only (their padding-free path also counts each
  padded position, whose similarity is 0);
- pools of Eq. 9-11 are each prompt's group (`Context.layout.group`, the trainer's
  num_generations; the paper's "rollout group") unless `group_rows` > 0 sets a row count; with no
  group known (a bare call), the whole batch. Their code groups rollout_n consecutive rows of a
  micro-batch when it has that many and pools the micro-batch otherwise (their 7B script: micro-
  batches of 4 < rollout_n 8, so the pool is the micro-batch). Responses without valid tokens
  take no part (α 1).

Counterfactual: none (one forward, the real image). Scope: global min-max over the rows given;
ψ per response; α per prompt group. Ties: none: the gate takes every token tied at its threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, check_range, register, row_min_max
from tokencredit.weighting.vepo import row_unit


def tail_gate(w: Tensor, mask: Tensor, gamma: float, kappa: float) -> Tensor:
    """Bool [B, T]: the top max(1, floor(kappa m)) of w among each response's last m = n - floor(gamma n) valid tokens."""
    n = mask.sum(1)
    order = mask.long().cumsum(1) - 1  # index among the response's valid tokens
    start = torch.floor(n.double() * gamma).long()
    tail = mask & (order >= start[:, None])
    top = torch.floor((n - start).double() * kappa).long().clamp(min=1)
    ranked = w.masked_fill(~tail, -torch.inf).sort(dim=1, descending=True).values
    threshold = ranked.gather(1, (top - 1).clamp(max=w.shape[1] - 1)[:, None])
    return tail & (w >= threshold)


def group_scale(phi: Tensor, has: Tensor, rows: int, low: float, high: float) -> Tensor:
    """alpha [B]: per pool of `rows` consecutive rows, clamp(1 + minmax(phi) - mean, low, high)."""
    alpha = torch.ones_like(phi)
    for start in range(0, len(phi), rows):
        pool = torch.zeros_like(has)
        pool[start : start + rows] = True
        pool &= has
        if pool.any():
            values = phi[pool]
            unit = (values - values.min()) / (values.max() - values.min() + 1e-8)
            alpha[pool] = (1.0 + unit - unit.mean()).clamp(low, high)
    return alpha


@register(
    "vgpo", needs=("hidden_sim_last",),
    scope="global min-max over the rows given; ψ per response; α per prompt group (group_rows)",
    ties="none: the tail gate takes every token tied at its threshold",
)  # fmt: skip
def vgpo(beta: float = 0.3, gamma: float = 0.5, kappa: float = 0.2, group_rows: int = 0) -> WeightFn:
    check_range("beta", beta, 0.0)
    check_range("gamma", gamma, 0.0, 1.0)
    check_range("kappa", kappa, 0.0, 1.0)
    if group_rows < 0 or group_rows != int(group_rows):
        raise ValueError(f"group_rows={group_rows} must be a whole number >= 0 (0: the prompt's group)")

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        sim = signals.require("hidden_sim_last").float()
        valid = sim[mask]
        w = ((sim - valid.min()) / (valid.max() - valid.min() + 1e-8) * mask) if valid.numel() else sim * 0
        position = torch.arange(mask.shape[1], device=mask.device).expand_as(mask).float()
        first, last = row_min_max(position, mask)
        boost = beta * (position - first[:, None]) / (last - first + 1e-8)[:, None]
        w = w * (1.0 + tail_gate(w, mask, gamma, kappa) * boost)
        unit = row_unit(w, mask)
        n = mask.sum(1, keepdim=True).clamp(min=1)
        psi = (1.0 + unit - unit.sum(1, keepdim=True) / n).clamp(0.1, 2.0)
        rows = int(group_rows) or context.layout.group or len(mask)
        alpha = group_scale(unit.sum(1), mask.any(1), rows, 0.9, 2.0)
        return alpha[:, None] * psi * mask

    return weights
