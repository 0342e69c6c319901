"""PAPO (Wang et al., "Perception-Aware Policy Optimization for Multimodal Reasoning", arXiv 2507.06448).

Implicit perception loss: the policy is pushed AWAY from what it would say with a masked image,
    L_aux = −γ · mean_t KL_prcp(t) + c_ori · mean_t(−log π_θ(o_t|I)) + c_aug · mean_t(−log π(o_t|I_mask)),
KL_prcp(t) = low_var_kl(log π_θ(o_t|I), log π(o_t|I_mask)) = e^{d} − d − 1 with d = log π(o_t|I_mask) −
log π_θ(o_t|I) clamped to ±20, the result to ±10 (verl's `compute_kl`, k3). The last two terms are the
"double entropy" regulariser (off in the 3B GRPO scripts, 0.05 / 0.05 in the 7B GRPO ones, 0.03 / 0.03
in DAPO's, where γ is 0.01 instead of 0.02; params.py has these variants).

Follows MikeWangWZHL/PAPO at commit fb63bf4533b78da5a2bb17bc812375dcb620887d:
verl/workers/actor/dp_actor.py `DataParallelPPOActor.update_policy` (the kl_prcp and aug/ori entropy
terms), verl/trainer/core_algos.py `compute_kl` (low_var_kl), verl/trainer/papo_utils.py
`random_patch_blackening` (the masked image: 14-px patches blackened with probability 0.6), and
examples/papo_grpo/qwen2_5_vl_3b_grpo_papo.sh (γ = 0.02). As their default (RECOMPUTE_AUG_LOG_PROBS =
False), log π(o_t|I_mask) is scored once per generation batch with the rollout policy, without grad
(`logp_cf` of the `patch_blackening` counterfactual): the masked-view entropy term then has a value
but no gradient, as theirs. Our blackening works on the 14-px patches of the resized image (one
pixel_values row each), theirs on 14-px squares of the original image before resizing.
Means: token means over the optimizer step (`LossInputs.token_mean`); theirs is a token mean per
micro-batch divided by the accumulation steps, the same when micro-batches hold equal token counts.
Forwards: no forward with grad beyond TRL's loss forward; one no-grad counterfactual forward per
generation batch (the scoring forward of logp_cf).
"""

from __future__ import annotations

from torch import Tensor

from tokencredit.losses import LossFn, LossInputs, register_loss
from tokencredit.weighting import check_range


def low_var_kl(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """verl's low_var_kl (k3) of log π against log π_ref, per token, clamped as theirs."""
    d = (logp_ref - logp).clamp(-20.0, 20.0)
    return (d.exp() - d - 1).clamp(-10.0, 10.0)


def away_from_view(gamma: float, ori_entropy_coef: float, aug_entropy_coef: float) -> LossFn:
    """−γ · mean_t KL(t) + c_ori · mean_t(−log π_θ(o_t|I)) + c_aug · mean_t(−log π(o_t|I')), the counterfactual
    view I' read from `logp_cf` (PAPO's masked image; CFPO's in-model counterfactual, losses/cfpo.py)."""

    def loss(x: LossInputs) -> Tensor:
        logp_cf = x.signals["logp_cf"]
        kl_prcp = x.token_mean(low_var_kl(x.logps, logp_cf))
        return -gamma * kl_prcp + ori_entropy_coef * x.token_mean(-x.logps) + aug_entropy_coef * x.token_mean(-logp_cf)

    return loss


@register_loss("papo", needs=("logp_cf",), counterfactual="patch_blackening", counterfactual_options=("black_prob",))
def papo(gamma: float = 0.02, ori_entropy_coef: float = 0.0, aug_entropy_coef: float = 0.0, black_prob: float = 0.6) -> LossFn:
    check_range("gamma", gamma, 0.0)
    check_range("ori_entropy_coef", ori_entropy_coef, 0.0)
    check_range("aug_entropy_coef", aug_entropy_coef, 0.0)
    check_range("black_prob", black_prob, 0.0, 1.0)
    return away_from_view(gamma, ori_entropy_coef, aug_entropy_coef)
