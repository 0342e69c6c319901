"""Control (no paper): weights from the synthetic task's ground-truth token roles, the ceiling for any signal.

Every sampled token is labelled perception (the object listing in <think>), reasoning (the
derivation and the answer), format (tags, separators) or noise (`data.noise_words`), by the rule that
labels the synthetic targets (synthetic.completion_role_spans, as the score step labels them).
w = `perception_weight`, `reasoning_weight`, `format_weight` or `noise_weight` (by default the format
weight: noise words are glue that nothing depends on) by role; with `normalize` each response's weights are rescaled to sum to
its length (mean 1, as PGPO and AT-RL do). Variants (params.py): `oracle_perception` boosts
perception tokens (2 : 1 : 1, normalized), the ceiling of PGPO, VPPO and AT-RL's visual signals;
`oracle_reasoning` trains on reasoning tokens only (0 : 1 : 0), the ceiling of the entropy-based
selection of entropy_topk and ToR.
Only the synthetic task has roles: training on other data stops (training.build_trainer, and the
params check of data.source).
Counterfactual: none. Scope: per response. Ties: none, no selection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.synthetic import ROLES
from tokencredit.weighting import Context, WeightFn, check_range, conserve_mass, register


@register("oracle_roles", needs=("role",), scope="per response: each token's ground-truth role", ties="none: no selection")
def oracle_roles(
    perception_weight: float = 2.0,
    reasoning_weight: float = 1.0,
    format_weight: float = 1.0,
    noise_weight: float | None = None,
    normalize: bool = True,
) -> WeightFn:
    noise_weight = format_weight if noise_weight is None else noise_weight
    by_role = {"perception": perception_weight, "reasoning": reasoning_weight, "format": format_weight, "noise": noise_weight}
    for role, value in by_role.items():
        check_range(f"{role}_weight", value, 0.0)
    table = torch.tensor([float(by_role[role]) for role in ROLES])

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        w = table.to(mask.device)[signals.require("role").long()] * mask
        return conserve_mass(w, mask) if normalize else w

    return weights
