"""VPPO (Huang et al., ICLR 2026): visual-dependency gating and trajectory advantage shaping.

S_t = vis_k3, the sampled-token KL estimate under patch blackening (as in the authors' code).
TGF: per response keep the top `k` of tokens by S_t. TAS: scale response i by
alpha_i = beta_min + n_i (beta_max - beta_min), where n_i is the response's mean S min-max
normalised over a pool of responses and beta_max = beta_min + (1 - beta_min) / mean(n), so mean
alpha = 1 over the pool; alpha = 1 when the pool's mean scores span <= 1e-6. w = alpha_i on kept
tokens, 0 elsewhere. Responses without valid tokens take no part in the statistics (alpha 1).

TAS's pools (`tas_scope`):
- "micro_batch" (default, the authors' code, dp_actor.py `update_policy`): min and max over one
  process's rows of an optimizer step (EasyR1's per-device mini-batch; the cross-device
  all_reduce is commented out there), mean(n) and alpha over pools of `tas_rows` rows, the
  authors' micro-batch (8 rows in their scripts). Since n <= 1 and mean alpha = 1 over m rows,
  alpha <= beta_min + m (1 - beta_min): 1.7 for pools of 8. The pool is its own hyperparameter,
  not the trainer's micro_batch_size: a memory setting must not move alpha's cap (7B params run
  micro-batches of 4, which would cap alpha at 1.3).
- "global_range": min and max over the rows given (the global generated batch), mean(n) and alpha
  over pools of `tas_rows` rows: the awesome-perception-aware-rlvr fork's VPPO (its controlled
  comparison), which takes min and max over the rollout batch before the update
  (verl/trainer/perception_reasoning_loss.py at 160666da5d81cbe043d31e63fba6862187df8177,
  `build_sensitivity_advantage_shaping_context`) and mean(n) per update micro-batch
  (`_compute_vppo_response_scaling`; 4 rows per device there, so tas_rows 4).
- "batch": everything over the rows given, i.e. the trainer's global generated batch. Unbounded
  in practice: one image-dependent outlier among 1,024 responses makes alpha about 100.
The trainer passes its optimizer-step rows as `Context.layout.step`. TRL shuffles rows into
micro-batches after weighting, but the update sums over micro-batches, so only which rows share a
pool matters. Pools are consecutive rows of the generated batch (whole prompt groups in order,
within one process).

Counterfactual: `patch_blackening`. Scope: TGF per response, TAS per pool as above.
Ties: TGF takes a random subset among equal S_t, from the step's seeded generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, Layout, WeightFn, check_range, register, row_top_fraction

TAS_SCOPES = ("micro_batch", "global_range", "batch")


def trajectory_scale(scores: Tensor, mask: Tensor, beta_min: float, layout: Layout = Layout()) -> Tensor:
    """TAS alpha [B]: min/max over pools of `layout.step` rows, mean(n) over pools of `layout.micro_batch` rows."""
    length = mask.sum(1)
    has = length > 0
    mean = (scores * mask).sum(1) / length.clamp(min=1)
    alpha = torch.ones_like(mean)
    n_rows = mean.shape[0]
    step, micro = layout.step or n_rows, layout.micro_batch or n_rows
    for start in range(0, n_rows, step):
        pool = slice(start, start + step)
        if not has[pool].any():
            continue
        low, high = mean[pool][has[pool]].min(), mean[pool][has[pool]].max()
        if high - low <= 1e-6:
            continue
        n = ((mean - low) / (high - low)).clamp(0.0, 1.0)
        for sub in range(start, min(start + step, n_rows), micro):
            rows = slice(sub, sub + micro)
            if has[rows].any():
                mu = n[rows][has[rows]].mean()
                beta_max = beta_min + (1.0 - beta_min) / (mu + 1e-8)
                alpha[rows] = torch.where(has[rows], beta_min + n[rows] * (beta_max - beta_min), 1.0)
    return alpha


@register(
    "vppo", needs=("vis_k3",), counterfactual="patch_blackening",
    scope="TGF per response; TAS min/max per process step, mean per micro-batch of tas_rows rows (tas_scope)",
)  # fmt: skip
def vppo(k: float = 0.4, beta_min: float = 0.9, tas_scope: str = "micro_batch", tas_rows: int = 8) -> WeightFn:
    check_range("k", k, 0.0, 1.0, low_open=True)
    check_range("beta_min", beta_min, 0.0, 1.0)
    if tas_rows < 1 or tas_rows != int(tas_rows):
        raise ValueError(f"tas_rows={tas_rows} must be a whole number of rows >= 1")
    if tas_scope not in TAS_SCOPES:
        raise ValueError(f"tas_scope={tas_scope!r} must be one of {list(TAS_SCOPES)}")

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        scores = signals.require("vis_k3").float()
        kept = row_top_fraction(scores, mask, k, context.tie_generator()).float()
        step = context.layout.step if tas_scope == "micro_batch" else None  # None: min and max over every row given
        layout = Layout() if tas_scope == "batch" else Layout(micro_batch=int(tas_rows), step=step)
        return trajectory_scale(scores, mask, beta_min, layout)[:, None] * kept

    return weights
