"""ToR with its perception set ranked by the k3 estimate of KL(pi(.|I) || pi(.|I')), as the fork's comparison runs it.

Same weights as `tor` (weighting/tor.py), T_p ranked by the `vis_k3` signal instead of |logp - logp_cf|. The
controlled comparison of zsxm1998/awesome-perception-aware-rlvr (examples/comparison/qwen3_vl_4b/tor.sh at 119b93f)
sets no `visual_sensitivity_metric`, so its ToR takes the default of verl/trainer/config.py, `sampled_low_var_kl`:
verl/trainer/perception_reasoning_loss.py `build_batch_token_masks` scores every token of the rollout batch with
verl/trainer/visual_sensitivity.py `compute_sampled_low_var_kl(decremental_old_log_probs, old_log_probs, "old")`,
clamp(e^d - d - 1, 0, 10) with d = clamp(log pi_old(o_t | I') - log pi_old(o_t | I), -20, 20), and
`_compute_top_quantile_mask` keeps exactly the ceil(0.3 N) largest of its N tokens; `_compute_tor_weight` as `tor`.
`vis_k3` (signals.k3) is that estimate, in float64 where the fork's float32 gives 0 or noise for |d| < ~1e-4.
Golden numbers from those functions: tests/golden/zoo_weights.json (sources: tor_k3).
Counterfactual: `drop_image` (ToR's). Scope: global batch, both top-rho sets, as tor.
Ties: random among equal scores, from the step's seeded generator (the fork: a seeded permutation, other draws).
"""

from __future__ import annotations

from tokencredit.weighting import register
from tokencredit.weighting.tor import SCOPE, token_reweighting

tor_k3 = register("tor_k3", needs=("entropy", "vis_k3"), counterfactual="drop_image", scope=SCOPE)(
    token_reweighting("entropy", "vis_k3")
)
