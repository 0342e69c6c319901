"""Weighted GRPO/DAPO through TRL on the tiny model: the weights reach the loss; DAPO refills batches."""

import itertools

import pytest
import torch

from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, TrainParams
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import grpo_config, grpo_dataset
from tokencredit.weighting import build_weighting, default_counterfactual, required_signals

TRAIN = TrainParams(max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=12, save_steps=100)


def make_trainer(tiny_world, tmp_path, method: str, algo: str, reward_funcs, hparams=None):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    spec = MethodSpec(weighting=method, hparams=hparams or {})
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=grpo_config(TRAIN, get_algorithm(algo), [1.0], seed=0, output_dir=tmp_path / method),
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
        reward_funcs=reward_funcs,
        weighting=build_weighting(spec.weighting, **spec.hparams),
        needs=required_signals(method),
        counterfactual=default_counterfactual(method),
        chunk_size=7,
        attention_layers=[-1],
        dynamic_sampling_tries=4 if get_algorithm(algo).dynamic_sampling else 0,
    )


def length_parity_reward(completion_ids, **_):
    """A reward with variance inside every group, so advantages are non-zero whatever the policy."""
    return [float(len(ids) % 2) for ids in completion_ids]


def one_step_update(tiny_world, tmp_path, method):
    seen = []

    def reward(completion_ids, **kw):
        seen.append([list(ids) for ids in completion_ids])
        return [float(i % 2) for i in range(len(completion_ids))]  # mixed in every group of 4

    trainer = make_trainer(tiny_world, tmp_path, method, "grpo", [reward])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    delta = torch.cat([(p.detach() - before[n]).flatten() for n, p in trainer.model.named_parameters()])
    return delta, seen[0], trainer


@pytest.mark.parametrize("method", ["entropy_topk", "tor", "vppo", "pgpo", "atrl"])
def test_method_weights_reach_the_update(tiny_world, tmp_path, method):
    uniform_delta, uniform_completions, _ = one_step_update(tiny_world, tmp_path, "uniform")
    delta, completions, trainer = one_step_update(tiny_world, tmp_path, method)
    assert completions == uniform_completions  # same rollouts: only the weights differ
    assert uniform_delta.abs().max() > 0 and delta.abs().max() > 0
    assert not torch.allclose(delta, uniform_delta, atol=1e-9)
    logged = trainer.state.log_history[0]
    assert "weights/weight_mean" in logged and torch.isfinite(torch.tensor(trainer.state.log_history[0]["loss"]))


def test_dapo_dynamic_sampling_refills_the_batch(tiny_world, tmp_path):
    toggle = itertools.cycle([0.0, 1.0])

    def reward(completions, answer, **_):
        # Prompts whose answer is "0" always get equal rewards (a group DAPO must drop); others alternate.
        return [0.0 if a == "0" else next(toggle) for a in answer]

    trainer = make_trainer(tiny_world, tmp_path, "uniform", "dapo", [reward])
    trainer.model.train()
    zeros = [row for row in trainer.train_dataset if row["answer"] == "0"][:2]
    inputs = [row for row in zeros for _ in range(trainer.num_generations)]
    batch = trainer._generate_and_score_completions(inputs)
    g = trainer.num_generations
    assert batch["completion_ids"].size(0) == len(inputs)  # the batch keeps its size
    per_group = batch["advantages"].view(-1, g, batch["advantages"].size(1))
    assert (per_group != 0).flatten(1).any(dim=1).all()  # every group now has mixed rewards
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/rounds"][-1] > 1
    assert metrics["dynamic_sampling/dropped_frac"][-1] > 0
    assert metrics["dynamic_sampling/unfilled_frac"][-1] == 0
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    assert batch["pixel_values"].size(0) == batch["image_grid_thw"].prod(-1).sum()


def test_attention_method_on_sdpa_model_fails_before_training(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams(attn_implementation="sdpa"))
    with pytest.raises(ValueError, match="eager"):
        WeightedGRPOTrainer(
            model=model,
            processing_class=processor,
            args=grpo_config(TRAIN, get_algorithm("grpo"), [1.0], seed=0, output_dir=tmp_path / "sdpa"),
            train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
            reward_funcs=[length_parity_reward],
            weighting=build_weighting("atrl"),
            needs=required_signals("atrl"),
            counterfactual=None,
            chunk_size=7,
            attention_layers=[-1],
        )
