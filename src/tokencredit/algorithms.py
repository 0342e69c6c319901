"""Base algorithms (METHODS.md §4) as TRL GRPOConfig settings.

Every algorithm combines with every method: the method reshapes per-token advantages (and may add
an auxiliary loss or transform the rollouts), the algorithm chooses TRL's per-token loss, its
normaliser, the clip range, the importance ratio's level and dynamic sampling.

TRL's own loss variants (trl 1.16 GRPOTrainer._compute_loss), at their papers' settings as TRL documents them:
- cispo (MiniMax-M1, arXiv 2506.13585): −clamp(ratio, max=ε_high).detach() · A · log π_θ, token-level
  normaliser; ε_high 5.0 (TRL's recommended ε_max of ScaleRL, arXiv 2510.13786); ε_low unused.
- sapo (arXiv 2511.20347): a soft sigmoid gate of temperature 1.0 (A > 0) / 1.05 (A ≤ 0) in place of the
  clip (TRL's sapo_temperature_pos/neg defaults), per-response normaliser; ε unused.
- gspo (arXiv 2507.18071): GRPO's loss with the sequence-level ratio exp(mean_t log ratio_t)
  (importance_sampling_level "sequence"), clip 3e-4 / 4e-4 (the paper's, as in TRL's paper index).
Weighted advantages A_i·w_{i,t} enter every one of them per token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Algorithm:
    loss_type: str  # TRL loss aggregation: "grpo" (per-response mean), "dapo" (token-level), "dr_grpo" (constant)
    scale_rewards: str  # "group": divide by the group std; "none": Dr. GRPO
    epsilon_low: float
    epsilon_high: float
    dynamic_sampling: bool  # DAPO: keep only groups with mixed rewards, generate more to fill the batch
    overlong_shaping: bool  # DAPO: soft penalty on responses near the length budget (when L_cache is set)
    importance_sampling_level: str = "token"  # "sequence": GSPO's ratio of sequence likelihoods


ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm("grpo", "group", 0.2, 0.2, dynamic_sampling=False, overlong_shaping=False),
    "dapo": Algorithm("dapo", "group", 0.2, 0.28, dynamic_sampling=True, overlong_shaping=True),
    "dr_grpo": Algorithm("dr_grpo", "none", 0.2, 0.2, dynamic_sampling=False, overlong_shaping=False),
    "cispo": Algorithm("cispo", "group", 0.2, 5.0, dynamic_sampling=False, overlong_shaping=False),
    "sapo": Algorithm("sapo", "group", 0.2, 0.2, dynamic_sampling=False, overlong_shaping=False),
    "gspo": Algorithm("grpo", "group", 3e-4, 4e-4, dynamic_sampling=False, overlong_shaping=False, importance_sampling_level="sequence"),
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]
