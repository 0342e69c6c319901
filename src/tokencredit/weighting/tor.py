"""ToR (Lu et al. 2026): token reweighting of reasoning and perception tokens.

Reasoning set T_r: top `rho_r` of the batch's valid tokens by entropy. Perception set T_p: top
`rho_p` by |logp - logp_cf| with the image dropped. w = gamma_r on T_r, gamma_p on T_p minus T_r,
0 elsewhere. Ablations: reasoning-only (gamma_p = 0) and perception-only, w = gamma_p on ALL of
T_p (rho_r = 0, so T_r is empty). gamma_r = 0 is not perception-only: it leaves the overlap
T_p ∩ T_r at weight 0 and trains only part of T_p.
Counterfactual: `drop_image` (the prompt re-tokenized without the image).
Scope: both top-ρ sets are over the global generated batch of a training step, over all processes.
Ties: random among equal scores, from the step's seeded generator.

Entropy (issue 22): the fork (zsxm1998/awesome-perception-aware-rlvr, examples/reproduction/tor) reads
ToR's Eq. 5 as the entropy of the top-p 0.95 set, renormalised, and notes the paper does not say
whether it renormalises; the paper's text could not be read here. `tor` keeps the full-vocabulary
entropy; `tor_top_p` (weighting/tor_top_p.py, same weights) reads the `entropy_top_p` signal,
whose p and renormalisation are scoring.entropy_top_p and scoring.renormalize_top_p.
Perception score (issue 22): the fork's controlled comparison ranks T_p by its default k3 estimate;
`tor_k3` (weighting/tor_k3.py, same weights) reads the `vis_k3` signal.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, batch_top_fraction, check_range, register


SCOPE = "global batch: both top-ρ sets over every valid token of the generated batch"


def token_reweighting(entropy: str, sensitivity: str = "vis_absdiff") -> Callable[..., WeightFn]:
    """ToR's builder, its reasoning set ranked by the signal `entropy`, its perception set by the signal `sensitivity`."""

    def tor(rho_r: float = 0.3, rho_p: float = 0.3, gamma_r: float = 1.0, gamma_p: float = 0.5) -> WeightFn:
        check_range("rho_r", rho_r, 0.0, 1.0)
        check_range("rho_p", rho_p, 0.0, 1.0)
        check_range("gamma_r", gamma_r, 0.0)
        check_range("gamma_p", gamma_p, 0.0)

        def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
            mask, generator = signals.mask, context.tie_generator()
            reasoning = batch_top_fraction(signals.require(entropy), mask, rho_r, generator)
            perception = batch_top_fraction(signals.require(sensitivity), mask, rho_p, generator) & ~reasoning
            return gamma_r * reasoning.float() + gamma_p * perception.float()

        return weights

    return tor


tor = register("tor", needs=("entropy", "vis_absdiff"), counterfactual="drop_image", scope=SCOPE)(token_reweighting("entropy"))
