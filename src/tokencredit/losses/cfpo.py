"""CFPO (Yu et al., "CFPO: Counterfactual Policy Optimization for Multimodal Reasoning", arXiv 2606.23206).

The policy is pushed AWAY from what it would say if the image tokens it attends to most carried no
information, a counterfactual made inside the model (`salient_value_mean`, tokencredit.salient_values:
in every decoder attention layer, the values of the image tokens above μ + λ·σ of the attention are
replaced by the image tokens' mean):
    L_aux = −γ · mean_t KL_cf(t) + c_ori · mean_t(−log π_θ(o_t|I)) + c_cf · mean_t(−log π(o_t|do(Z = Z_cf))),
KL_cf(t) = low_var_kl(log π_θ(o_t|I), log π(o_t|cf)), k3 clamped as verl's `compute_kl` (papo.low_var_kl):
PAPO's loss with CFPO's counterfactual in place of the masked image (papo.away_from_view).

Follows Raven-July/CFPO at commit 966c6b15c975b78a1581084f0ce566f1c7666ef5:
verl/workers/actor/dp_actor.py `DataParallelPPOActor.update_policy` (pg_loss − kl_cmve_coef · kl_cmve_loss,
+ ori / cmve entropy terms), verl/trainer/core_algos.py `compute_kl` (low_var_kl), the counterfactual
of verl/models/transformers/qwen2_vl_cmve.py (salient_values.py cites its functions), and
examples/qwen2_5_vl_3b_CFPO-G-math.sh (γ 0.02, no entropy terms: these defaults) and
examples/qwen2_5_vl_3b_CFPO-D-math.sh (DAPO: γ 0.01, ori entropy 0.03: params' `cfpo_dapo`), as their
README's table (and its "saliency threshold λ 2"). kl_cmve_weighting is 1 ("all", their default; the
annealing schedule, clipping and token-level top-p masks are off in both scripts and left out).
log π(o_t|cf) is scored once per generation batch with the rollout policy, without grad, as theirs
(`compute_log_probs_cmve`, the "old actor" after generation): `logp_cf` of the counterfactual; so the
counterfactual entropy term has a value but no gradient, as theirs.
Means: token means over the optimizer step (`LossInputs.token_mean`; theirs: per micro-batch, the same
when micro-batches hold equal token counts). Forwards: none with grad beyond TRL's loss forward; one
no-grad counterfactual forward per generation batch (the scoring forward of logp_cf).
"""

from __future__ import annotations

from tokencredit.losses import LossFn, register_loss
from tokencredit.losses.papo import away_from_view
from tokencredit.salient_values import THRESHOLD_STD
from tokencredit.weighting import check_range


@register_loss("cfpo", needs=("logp_cf",), counterfactual="salient_value_mean", counterfactual_options=("threshold_std",))
def cfpo(gamma: float = 0.02, ori_entropy_coef: float = 0.0, cf_entropy_coef: float = 0.0, threshold_std: float = THRESHOLD_STD) -> LossFn:
    check_range("gamma", gamma, 0.0)
    check_range("ori_entropy_coef", ori_entropy_coef, 0.0)
    check_range("cf_entropy_coef", cf_entropy_coef, 0.0)
    check_range("threshold_std", threshold_std, 0.0)
    return away_from_view(gamma, ori_entropy_coef, cf_entropy_coef)
