"""ToR (Lu et al. 2026): token reweighting of reasoning and perception tokens.

Reasoning set T_r: top `rho_r` of the batch's valid tokens by entropy. Perception set T_p: top
`rho_p` by |logp - logp_cf| with the image dropped. w = gamma_r on T_r, gamma_p on T_p minus T_r,
0 elsewhere. Ablations: reasoning-only (gamma_p = 0), perception-only (gamma_r = 0).
Batch-wide: both quantiles are over the global batch of a training step, over all processes.
"""

from __future__ import annotations

from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import WeightFn, batch_top_fraction, check_range, register


@register("tor", needs=("entropy", "vis_absdiff"), counterfactual="drop_image")
def tor(rho_r: float = 0.3, rho_p: float = 0.3, gamma_r: float = 1.0, gamma_p: float = 0.5) -> WeightFn:
    check_range("rho_r", rho_r, 0.0, 1.0)
    check_range("rho_p", rho_p, 0.0, 1.0)
    check_range("gamma_r", gamma_r, 0.0)
    check_range("gamma_p", gamma_p, 0.0)

    def weights(signals: TokenSignals, advantages: Tensor) -> Tensor:
        mask = signals.mask
        reasoning = batch_top_fraction(signals.require("entropy"), mask, rho_r)
        perception = batch_top_fraction(signals.require("vis_absdiff"), mask, rho_p) & ~reasoning
        return gamma_r * reasoning.float() + gamma_p * perception.float()

    return weights
