"""DVRP ("Dual-View Regularized Policy optimization", arXiv 2601.06801): perception through two views.

No official code exists; this follows the paper and the zsxm1998/awesome-perception-aware-rlvr fork's
version of it: verl/trainer/perception_reasoning_loss.py (commit 160666da5d81cbe043d31e63fba6862187df8177)
`compute_perception_reasoning_policy_loss` (the visual-sensitivity term and the DVRP robustness term),
verl/trainer/visual_sensitivity.py `compute_sampled_low_var_kl`, verl/utils/perturbations/pixel.py
`compute_noise_schedule` / `vp_diffusion_noise`, and examples/comparison/qwen3_vl_4b/dvrp.sh
(λ_nec = λ_rob = 0.01, blackening p 0.6, noise_t_init 500, noise_gamma 10, noise_t_max 1000):
    L_aux = −λ_nec · mean_t KL_t(masked view) + λ_rob · mean_t KL_t(noised view),
KL_t = k3 of the current log π_θ(o_t|I) against a view's rollout-policy log π(o_t|I') (papo.low_var_kl,
clamped at ±20 / ±10 as the fork's "current" reference): the policy is pushed away from what it
says without the image's content (necessity) and towards what it says under noise (robustness).
- Masked view ("decremental"): patches blackened with probability 0.6, scored once per generation batch
  without grad (`logp_cf` of the `patch_blackening` counterfactual), as PAPO's.
- Noised view ("incremental"): the paper's diffusion noise, as the fork substitutes it: one step t of
  NoisyRollout's forward-diffusion schedule (counterfactual.diffusion_noised_pixel_values), t annealed as
  noise_t_init · sigmoid(noise_gamma · (0.5 − progress)). Scored per micro-batch without grad with the
  current policy, which is the rollout policy at the first update of a generated batch (the fork's
  "old" log-probs); later updates (train.updates_per_generation > 1) read the current one. The noise
  acts on the processor's resized image (the fork noises the image before resizing: equal when, as in
  the embedded task, the processor does not resize), rounded to 8 bits.
The fork's view-entropy terms (decremental/incremental_entropy_coef, off in its comparison recipe)
have no gradient there (they read the views' old log-probs) and are left out.
Forwards: one no-grad forward per micro-batch (the noised view), none with grad beyond TRL's loss
forward; one no-grad counterfactual forward per generation batch (the masked view's logp_cf).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.counterfactual import DIFFUSION_STEPS, diffusion_noised_pixel_values, noise_fraction, noise_step
from tokencredit.losses import LossFn, LossInputs, register_loss
from tokencredit.losses.papo import low_var_kl
from tokencredit.weighting import check_range


def dvrp_terms(logps: Tensor, logp_masked: Tensor, logp_noised: Tensor, x: LossInputs, nec_coef: float, rob_coef: float) -> Tensor:
    """−λ_nec · mean KL to the masked view + λ_rob · mean KL to the noised view (token means of the step)."""
    return -nec_coef * x.token_mean(low_var_kl(logps, logp_masked)) + rob_coef * x.token_mean(low_var_kl(logps, logp_noised))


@register_loss("dvrp", needs=("logp_cf",), counterfactual="patch_blackening", counterfactual_options=("black_prob",), nograd_forwards=1)
def dvrp(
    nec_coef: float = 0.01, rob_coef: float = 0.01, black_prob: float = 0.6,
    noise_t_init: float = 500.0, noise_gamma: float = 10.0, noise_t_max: float = 1000.0,
) -> LossFn:  # fmt: skip
    check_range("nec_coef", nec_coef, 0.0)
    check_range("rob_coef", rob_coef, 0.0)
    check_range("black_prob", black_prob, 0.0, 1.0)
    check_range("noise_t_init", noise_t_init, 0.0)
    check_range("noise_t_max", noise_t_max, 0.0, DIFFUSION_STEPS, low_open=True)

    def loss(x: LossInputs) -> Tensor:
        beta = noise_fraction(noise_step(x.progress, noise_t_init, noise_gamma, 0.5, noise_t_max))
        ip = x.image_processor
        pixels = diffusion_noised_pixel_values(
            x.inputs["pixel_values"], ip.image_mean, ip.image_std, beta, x.generator, temporal_patch_size=ip.temporal_patch_size
        )
        with torch.no_grad():
            logp_noised = x.logps_with({"pixel_values": pixels})
        return dvrp_terms(x.logps, x.signals["logp_cf"], logp_noised, x, nec_coef, rob_coef)

    return loss
