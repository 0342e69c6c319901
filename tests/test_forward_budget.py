"""The forward budget of one training step per method, counted at the decoder stack (issue 21).

Passes over the generated batch, by grad and input (benchmarks/forward_budget.py). A method's
budget follows from the signals it reads and its counterfactual input, so one method per kind
is trained here, and every default method must be of a counted kind.
"""

import pytest

from benchmarks.forward_budget import meets_goal, step_budget
from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import ModelParams, Params, ScoringParams, TrainParams
from tokencredit.training import build_trainer
from tokencredit.weighting import default_counterfactual, required_signals

REAL_SCORING = {"no_grad/real": 1.0, "grad/real": 1.0}  # the scoring forward, then the loss forward
WITH_COUNTERFACTUAL = {**REAL_SCORING, "no_grad/counterfactual": 1.0}
# (method, updates_per_generation) -> passes today. With updates_per_generation > 1 TRL adds its
# old-policy forward (no grad, real image), which a scoring method pays beside its own real forward.
BUDGETS = {
    ("uniform", 1): {"grad/real": 1.0},
    ("random_tor", 1): {"grad/real": 1.0},
    ("oracle_perception", 1): {"grad/real": 1.0},  # labels from the completion text
    ("entropy_topk", 1): REAL_SCORING,
    ("atrl", 1): REAL_SCORING,
    ("tor", 1): WITH_COUNTERFACTUAL,  # drop_image
    ("vppo", 1): WITH_COUNTERFACTUAL,  # patch_blackening
    ("pgpo", 1): WITH_COUNTERFACTUAL,  # mask_visual_attention
    ("uniform", 2): {"no_grad/real": 1.0, "grad/real": 1.0},
    ("vppo", 2): {**WITH_COUNTERFACTUAL, "no_grad/real": 2.0},  # misses the goal: TRL's old-policy forward and scoring's
}


def signature(spec) -> tuple:
    """What decides a method's forwards: the signals its weighting reads and its counterfactual input."""
    return frozenset(required_signals(spec.weighting)), spec.counterfactual or default_counterfactual(spec.weighting)


@pytest.mark.parametrize(("method", "updates"), list(BUDGETS))
def test_forwards_of_one_step(tiny_world, tmp_path, method, updates):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    train = TrainParams(
        max_steps=updates, updates_per_generation=updates, logging_steps=updates, save_steps=2 * updates,
        prompts_per_step=2, num_generations=2, micro_batch_size=2, max_completion_length=6,
    )  # fmt: skip
    spec = Params().methods[method]
    trainer = build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, spec, ScoringParams(), get_algorithm("grpo"), 0, tmp_path
    )
    budget = step_budget(trainer)
    assert budget == BUDGETS[method, updates]
    assert meets_goal(budget) == ((method, updates) != ("vppo", 2))


def test_every_default_method_is_of_a_counted_kind():
    methods = Params().methods
    counted = {signature(methods[m]) for m, _ in BUDGETS}
    uncounted = [name for name, spec in methods.items() if signature(spec) not in counted]
    assert not uncounted, f"add a method of each kind to BUDGETS: {uncounted}"
