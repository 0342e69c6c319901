"""Control (no paper): ground-truth process credit, the first token where a response leaves its target.

The synthetic task has one correct response per example (its `target`: the listing of every object,
the derivation, the answer), so every sampled response can be checked token by token: its tokens
before the first one that leaves the target are right, the first error and everything after it are
not (the `on_target` label signal, scoring.on_target_codes). This is the credit a perfect process
reward would assign, the ceiling of any token weighting on this task, and the testbed's positive
control (issue 24; docs/experiment.md). The outcome reward gives every token of a response the same
advantage A: a wrong response (A < 0) also pushes down its correct listing, a lucky one (A > 0, a
right answer after a misread object) also reinforces its error.

`oracle_first_error`: w = 1 - on_target where A < 0 (only the error and what follows it are pushed
down), w = on_target where A > 0 (only the correct prefix is reinforced; all of a fully correct
response), w = 1 where A = 0 (nothing to weigh). Not normalised: like VPPO's gate, the dropped
tokens' share of the update is simply removed.
Its twin, `random_first_error`, puts the first error at random (weighting/random_first_error.py).
Only the synthetic task has targets: training on other data stops (training.check_role_labels).
Counterfactual: none. Scope: per response. Ties: none, no selection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, register


def credit(on_target: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Weights of the rule above, given which tokens count as before the first error."""
    a = advantages.reshape(-1, 1).to(on_target.dtype)
    w = torch.where(a < 0, 1.0 - on_target, torch.where(a > 0, on_target, torch.ones_like(on_target)))
    return w * mask


@register("oracle_first_error", needs=("on_target",), scope="per response: the first token that leaves the target", ties="none: no selection")
def oracle_first_error() -> WeightFn:
    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        return credit(signals.require("on_target").float(), advantages, signals.mask)

    return weights
