"""VEPO (arXiv 2606.03937): train only on each response's most visually dependent uncertain tokens.

Authors' code: Leonnnnnn929/VEPO at 42473082dd59815ea636e7bb627f63f2772ca891, verl/utils/jsd_masking.py,
`compute_jsd_mask_scores` (score_type "D", their run_train.sh default) and `compute_jsd_topk_mask`;
verl/trainer/core_algos.py `compute_policy_loss` (jsd_mask_mode "mask").

Per response, min-max normalise (over its valid tokens, range floored at 1e-8, as their
`_minmax_normalize`) the JSD between the next-token distributions with the real and the
counterfactual image (`vis_jsd`), the entropy H (`entropy`) and |H_cf - H| (`entropy_cf`):
    s_t = (1 - (1 - ĵ_t)^α (1 - |ΔĤ|_t)^(1-α)) · ĥ_t
and keep the top ceil(k·n_i) tokens of each response (α 0.7, k 0.2). Their loss then averages
over the kept tokens only (masked_mean over the selection): with `normalize`, w = #valid / #kept
over the batch on kept tokens, so a loss averaged over all valid tokens is that average (as
entropy_topk). `entropy_gate=False` is their score type "E", the ablation without ĥ_t.

Counterfactual: `pixel_value_noise` (their noisy_image_mode "gaussian": N(0, 2²) added to the
normalised pixel values). VEPO also perturbs rollout images (NoisyRollout's annealed noise, a
rollout transform), which this weighting does not do.
Scope: per response (normalisation and top-k); `normalize` rescales over the rows given, the
global batch (theirs: the micro-batch's selected tokens).
Ties: random among equal scores, from the step's seeded generator (theirs: sort order).
"""

from __future__ import annotations

from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, check_range, register, row_min_max, row_top_fraction


def row_unit(scores: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-response min-max to [0, 1] over valid tokens, range floored at eps (0 on padding)."""
    low, high = row_min_max(scores, mask)
    return ((scores - low[:, None]) / (high - low).clamp(min=eps)[:, None]).clamp(0.0, 1.0) * mask


@register("vepo", needs=("vis_jsd", "entropy", "entropy_cf"), counterfactual="pixel_value_noise", scope="per response: min-max and top-k over each response's tokens")
def vepo(alpha: float = 0.7, k: float = 0.2, entropy_gate: bool = True, normalize: bool = True) -> WeightFn:
    check_range("alpha", alpha, 0.0, 1.0)
    check_range("k", k, 0.0, 1.0, low_open=True)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        entropy = signals.require("entropy").float()
        jsd = row_unit(signals.require("vis_jsd").float(), mask)
        gap = row_unit((signals.require("entropy_cf").float() - entropy).abs(), mask)
        scores = 1.0 - (1.0 - jsd).pow(alpha) * (1.0 - gap).pow(1.0 - alpha)
        if entropy_gate:
            scores = scores * row_unit(entropy, mask)
        kept = row_top_fraction(scores, mask, k, context.tie_generator()).float()
        return kept * (mask.sum() / kept.sum().clamp(min=1)) if normalize else kept

    return weights
