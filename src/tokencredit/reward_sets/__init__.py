"""Reward sets (issue 22): a method's own verifiable rewards, replacing the task's, one module each.

    rewards = build_reward_set("grit")      # RewardSet(funcs, weights): TRL's reward_funcs and reward_weights

Every other method trains on the task's reward (the grader's accuracy, plus `train.format_reward`);
a method whose contribution is the reward (GRIT's grounded-reasoning rewards) names a reward set in
its `reward:` component, which replaces it. DAPO's overlong shaping still applies on top. Each
function is a TRL reward function: `fn(prompts, completions, completion_ids, **dataset columns) ->
list[float]`, one number per completion; TRL logs each under its `__name__` (`rewards/<name>/mean`)
and the advantage reads their weighted sum. A reward set registers with `@register_reward_set(name)`;
a new one is one new file imported at the bottom of this module. Evaluation never reads these: every
method is graded by the task's grader.

A reward that asks the policy being trained (VAPO's claim probes) is a `PolicyReward`: the trainer
hands itself to it once, at construction (`bind`), and the reward calls its `claim_answers` and draws
from its `probe_rng`, seeded per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokencredit.registry import Registry


@dataclass(frozen=True)
class RewardSet:
    funcs: tuple[Callable[..., list[float]], ...]
    weights: tuple[float, ...]
    # The format it rewards must be one the policy learns or is asked for; params validation checks it:
    # on the synthetic task, `data.target_style` (the tiny model learns only its SFT targets' format);
    # on real data, a text `prompt.template` must contain (the instruction asking for the format).
    target_style: str | None = None
    prompt_asks: str | None = None
    # Dataset columns its functions read beyond the task's (VAPO: `claims`); params validation checks the data has them.
    columns: tuple[str, ...] = ()


class PolicyReward:
    """A reward function that runs the policy being trained; `policy` is the trainer, bound before training."""

    policy: Any = None

    def bind(self, trainer: Any) -> None:
        self.policy = trainer


REWARD_SETS: Registry[RewardSet] = Registry("reward set")
register_reward_set = REWARD_SETS.register
registered_reward_sets = REWARD_SETS.names
build_reward_set = REWARD_SETS.build


# Each import registers one reward set.
from tokencredit.reward_sets import grit, grit_fork, vapo  # noqa: E402, F401
