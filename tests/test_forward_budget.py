"""The forward budget of one training step per method, counted at the decoder stack (issue 21).

Passes over the generated batch, by grad and input (benchmarks/forward_budget.py). What a method
pays follows from its recipe: the signals it scores, its counterfactual input, its loss's forwards
with grad and its rollout transform. One method of each such kind trains one step here; its count
must be the budget its recipe declares:
  grad/real 1                 TRL's loss forward
  no_grad/real 1              the scoring forward, when the recipe scores any signal
  no_grad/counterfactual 1    when it has a counterfactual input
  grad/counterfactual n       its loss's own forwards with grad (`register_loss(grad_forwards=n)`)
  + no_grad/real 1            TRL's old-policy forward when updates_per_generation > 1, for a method
                              without a scoring forward; a scoring method's forward gives those
                              log-probs (train.reuse_scoring_logps), so it pays its on-policy budget.
                              Without reuse it pays two real no-grad forwards, one more than the goal.
"""

import pytest

from benchmarks.forward_budget import kind as forward_kind
from benchmarks.forward_budget import meets_goal, one_of_each_kind, step_budget
from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.losses import loss_named
from tokencredit.models import load_policy
from tokencredit.params import ModelParams, Params, ScoringParams, TrainParams
from tokencredit.training import build_trainer

METHODS = Params().methods


def kind(name: str) -> tuple:
    return forward_kind(name, METHODS[name])


def declared_budget(name: str, updates: int, reuse: bool = True) -> dict[str, float]:
    needs, counterfactual, loss, _ = kind(name)
    old_policy = updates > 1 and not (needs and reuse)  # TRL's own old-policy forward
    budget = {"grad/real": 1.0, "no_grad/real": float(bool(needs)) + old_policy}
    # A loss's own forwards (DVRP's noised view) read other pixels than the rollout's: counterfactual.
    budget["no_grad/counterfactual"] = float(counterfactual is not None) + (loss_named(loss).nograd_forwards if loss else 0)
    budget["grad/counterfactual"] = float(loss_named(loss).grad_forwards if loss else 0)
    return {k: v for k, v in budget.items() if v}


CASES = [(name, 1, True) for name in one_of_each_kind(METHODS)]
CASES += [("uniform", 2, True), ("entropy_topk", 2, True), ("vppo", 2, True), ("vppo", 2, False)]


@pytest.mark.parametrize(("method", "updates", "reuse"), CASES)
def test_forwards_of_one_step(tiny_world, tmp_path, method, updates, reuse):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    train = TrainParams(
        max_steps=updates, updates_per_generation=updates, logging_steps=updates, save_steps=2 * updates,
        prompts_per_step=2, num_generations=2, micro_batch_size=2, max_completion_length=6, reuse_scoring_logps=reuse,
    )  # fmt: skip
    trainer = build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, METHODS[method], ScoringParams(),
        get_algorithm("grpo"), 0, tmp_path, method_name=method,
    )  # fmt: skip
    budget = step_budget(trainer)
    assert budget == declared_budget(method, updates, reuse)
    if reuse and kind(method)[0]:  # a scoring method pays off-policy what it pays on-policy
        assert budget == declared_budget(method, 1)
    extra = loss_named(kind(method)[2]).nograd_forwards if kind(method)[2] else 0  # DVRP's second view misses the goal by design
    assert meets_goal(budget) == ((reuse or updates == 1 or not kind(method)[0]) and not extra)
