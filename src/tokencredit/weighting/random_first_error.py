"""Control (no paper): the twin of oracle_first_error, "same structure, no signal".

Every response with A < 0 keeps its tokens from a uniformly drawn position on (its first error put
at random, from the step's seeded generator), every other response keeps all its tokens; the
weights then follow oracle_first_error's rule. A method that beats this twin gains from knowing
WHERE a response goes wrong, not from pushing down only the ends of wrong responses.
Counterfactual: none. Scope: per response. Ties: none, the position is a uniform random draw.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, register
from tokencredit.weighting.oracle_first_error import credit


@register(
    "random_first_error",
    scope="per response: a uniformly drawn first error in each response with A < 0",
    ties="none: the position is a uniform random draw from the step's seeded generator",
)
def random_first_error() -> WeightFn:
    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        generator = context.tie_generator()
        lengths = mask.sum(1)
        draw = torch.rand(lengths.shape, generator=generator, device=generator.device).to(mask.device)
        first_error = (draw * lengths).floor()  # uniform over each response's valid positions
        positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        before = (positions < first_error.unsqueeze(1)).float()
        wrong = advantages.reshape(-1, 1) < 0
        return credit(torch.where(wrong, before, torch.ones_like(before)), advantages, mask)

    return weights
