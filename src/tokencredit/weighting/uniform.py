"""Vanilla GRPO/DAPO: every valid token has weight 1.

Counterfactual: none. Scope: none, no statistic. Ties: none, no selection.
"""

from __future__ import annotations

from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, register


@register("uniform", scope="none: every valid token", ties="none: no selection")
def uniform() -> WeightFn:
    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        return signals.mask.float()

    return weights
