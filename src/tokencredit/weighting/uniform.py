"""Vanilla GRPO/DAPO: every valid token has weight 1."""

from __future__ import annotations

from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import WeightFn, register


@register("uniform")
def uniform() -> WeightFn:
    def weights(signals: TokenSignals, advantages: Tensor) -> Tensor:
        return signals.mask.float()

    return weights
