"""Beyond the 80/20 rule (Wang et al. 2025): train only on the batch's highest-entropy tokens.

Kept: the top `rho` of valid tokens of the batch by entropy. w = #valid / #kept on kept tokens,
so a loss averaged over all valid tokens equals the paper's average over kept tokens.
Counterfactual: none (entropy comes from the scoring forward with the real image).
Scope: the global generated batch of a training step, over all processes.
Ties: random among equal entropies, from the step's seeded generator.
"""

from __future__ import annotations

from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, batch_top_fraction, check_range, register


@register("entropy_topk", needs=("entropy",), scope="global batch: top-ρ over every valid token of the generated batch")
def entropy_topk(rho: float = 0.2) -> WeightFn:
    check_range("rho", rho, 0.0, 1.0, low_open=True)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        kept = batch_top_fraction(signals.require("entropy"), mask, rho, context.tie_generator()).float()
        n_kept = kept.sum()
        return kept * (mask.sum() / n_kept.clamp(min=1))

    return weights
