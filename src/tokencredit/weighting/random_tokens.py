"""Control (no paper): uniformly random tokens at a method's selection ratio and weight mass.

"Same sparsity, no signal": a method's random twin selects as many tokens as the method does and
gives the update as much weight, but picks the tokens at random. A method that cannot beat its
twin gains nothing from WHICH tokens it picks, only from how many or how much weight.

Selected: ceil(`ratio` * N) of the batch's N valid tokens (`per_response`: of each response's),
uniformly without replacement, from the step's seeded generator (`Context.generator`). Weight
`selected_weight` on selected tokens and `other_weight` on the rest; with `normalize` rescaled so
the mean weight over valid tokens is 1 (over the batch, or per response with `per_response`).
Twins (params.py): entropy_topk: ratio 0.2, normalized over the batch (its #valid / #kept);
AT-RL: ratio 0.15, 1.5 and 0.5, normalized per response; VPPO: ratio 0.4 per response, weight 1
(TAS's mean alpha is 1); ToR: the fraction it selected in training and the mean weight of its
selected tokens (weights/frac_selected and weights/weight_mean of a ToR run).
Counterfactual: none. Scope: the global batch of a training step (or per response). Ties: none,
the draw is the selection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, batch_top_fraction, check_range, register, row_top_fraction


@register(
    "random_tokens",
    scope="global batch (per_response: each response): ratio of the valid tokens, drawn at random",
    ties="none: the selection is a uniform random draw from the step's seeded generator",
)
def random_tokens(
    ratio: float = 0.2, selected_weight: float = 1.0, other_weight: float = 0.0, per_response: bool = False, normalize: bool = False
) -> WeightFn:
    check_range("ratio", ratio, 0.0, 1.0, low_open=True)
    check_range("selected_weight", selected_weight, 0.0, low_open=True)
    check_range("other_weight", other_weight, 0.0)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        generator = context.tie_generator()
        draw = torch.rand(mask.shape, generator=generator, device=generator.device).to(mask.device)
        top = row_top_fraction if per_response else batch_top_fraction
        w = torch.where(top(draw, mask, ratio, generator), selected_weight, other_weight) * mask
        if not normalize:
            return w
        dims = (1,) if per_response else (0, 1)
        return w * mask.sum(dims, keepdim=True) / w.sum(dims, keepdim=True).clamp(min=torch.finfo(w.dtype).tiny)

    return weights
