"""Base algorithms (METHODS.md §4) as TRL GRPOConfig settings.

Every algorithm combines with every weighting method: the method only reshapes per-token
advantages, the algorithm chooses the loss normaliser, the clip range and dynamic sampling.
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


ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm("grpo", "group", 0.2, 0.2, dynamic_sampling=False, overlong_shaping=False),
    "dapo": Algorithm("dapo", "group", 0.2, 0.28, dynamic_sampling=True, overlong_shaping=True),
    "dr_grpo": Algorithm("dr_grpo", "none", 0.2, 0.2, dynamic_sampling=False, overlong_shaping=False),
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]
