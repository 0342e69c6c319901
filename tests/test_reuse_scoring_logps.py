"""TRL's old-policy log-probs from the scoring forward (train.reuse_scoring_logps, issue 21): off-policy
they are the values TRL's own no-grad forward computes, in fp32 on the tiny model, and an off-policy
training step is the same with reuse on and off. The forwards saved are counted in test_forward_budget.py."""

import pytest
import torch
from transformers.training_args import OptimizerNames
from trl import GRPOTrainer

from tests.test_batch_schedule import Gradients, alternating_reward
from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, TrainParams
from tokencredit.recipe import resolve
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import grpo_config, grpo_dataset

# Two updates per generation, each of two micro-batches of 4: scoring's chunks (chunk_size 7 tokens,
# micro-batch rows) differ from TRL's forwards.
OFF_POLICY = dict(
    max_steps=2, updates_per_generation=2, logging_steps=2, save_steps=100, prompts_per_step=2, num_generations=4,
    micro_batch_size=4, max_completion_length=12, learning_rate=1e-3,
)  # fmt: skip


def make_trainer(tiny_world, out, method: str, reuse: bool, callbacks=(), **train) -> WeightedGRPOTrainer:
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    params = TrainParams(**{**OFF_POLICY, **train})
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=grpo_config(params, get_algorithm("grpo"), [1.0], seed=0, output_dir=out),
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir, processor),
        reward_funcs=[alternating_reward],
        callbacks=list(callbacks),
        recipe=resolve(method, MethodSpec(weighting=method)),
        chunk_size=7,
        attention_layers=[-1],
        signals_from_loss=params.signals_from_loss,
        reuse_scoring_logps=reuse,
    )


def generated_batch(trainer: WeightedGRPOTrainer) -> dict:
    trainer.model.train()
    rows = [trainer.train_dataset[i] for i in range(2)]
    return trainer._generate_and_score_completions([row for row in rows for _ in range(trainer.num_generations)])


def trls_old_policy_logps(trainer: WeightedGRPOTrainer, batch: dict) -> torch.Tensor:
    """TRL's own old-policy forward on `batch`'s rows, as its batch builder runs it."""
    mask = batch["completion_mask"]
    with torch.no_grad():
        return GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
            torch.cat([batch["prompt_mask"], mask], 1), mask.size(1), batch_size=trainer.args.per_device_train_batch_size,
            pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"], num_images=batch.get("num_images"),
            mm_token_type_ids=batch.get("mm_token_type_ids"),
        )[0]  # fmt: skip


@pytest.mark.parametrize("method", ["vppo", "entropy_topk"])
def test_scoring_gives_trls_old_policy_logps(tiny_world, tmp_path, method):
    trainer = make_trainer(tiny_world, tmp_path, method, reuse=True)
    assert trainer.reuse_scoring_logps
    batch = generated_batch(trainer)
    expected = trls_old_policy_logps(trainer, batch)
    assert expected[batch["completion_mask"].bool()].abs().min() > 0
    torch.testing.assert_close(batch["old_per_token_logps"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "train"),
    [
        ("uniform", {}),  # no scoring forward
        ("entropy_topk", {"signals_from_loss": True}),  # no scoring forward: signals from each micro-batch's loss forward
        ("vppo", {"updates_per_generation": 1, "max_steps": 1, "logging_steps": 1}),  # on-policy: TRL needs no old-policy log-probs
    ],
)
def test_trl_keeps_its_own_forward_where_scoring_cannot_serve(tiny_world, tmp_path, method, train):
    trainer = make_trainer(tiny_world, tmp_path, method, reuse=True, **train)
    assert not trainer.reuse_scoring_logps
    batch = generated_batch(trainer)
    if trainer.args.steps_per_generation > trainer.args.gradient_accumulation_steps:  # off-policy: TRL's own values
        torch.testing.assert_close(batch["old_per_token_logps"], trls_old_policy_logps(trainer, batch), rtol=0, atol=0)
    else:
        assert "old_per_token_logps" not in batch


def off_policy_training(tiny_world, out, reuse: bool) -> tuple[list, list[torch.Tensor], torch.Tensor]:
    """Each micro-batch's (completions, loss), each optimizer step's gradient, and the parameter change of one
    generation's two updates (plain SGD: the change is lr times the gradients)."""
    gradients = Gradients()
    trainer = make_trainer(tiny_world, out, "vppo", reuse, [gradients])
    trainer.args.optim = OptimizerNames.SGD
    losses = []
    compute_loss = trainer.compute_loss

    def recorded_loss(model, inputs, *args, **kwargs):
        loss = compute_loss(model, inputs, *args, **kwargs)
        losses.append((inputs["completion_ids"].tolist(), loss.item()))
        return loss

    trainer.compute_loss = recorded_loss
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    assert trainer.reuse_scoring_logps == reuse and trainer.state.global_step == 2
    return losses, gradients.steps, torch.cat([p.detach().flatten() for p in trainer.model.parameters()]) - before


def test_an_off_policy_step_is_the_same_with_reuse_on_and_off(tiny_world, tmp_path):
    reused, reused_grads, reused_change = off_policy_training(tiny_world, tmp_path / "on", reuse=True)
    own, own_grads, own_change = off_policy_training(tiny_world, tmp_path / "off", reuse=False)
    assert [rows for rows, _ in reused] == [rows for rows, _ in own] and len(own) == 4  # same rollouts, same micro-batches
    torch.testing.assert_close([loss for _, loss in reused], [loss for _, loss in own], rtol=1e-5, atol=1e-6)
    assert len(own_grads) == 2 and own_grads[1].abs().max() > 0
    for got, expected in zip(reused_grads, own_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(reused_change, own_change, rtol=1e-4, atol=1e-6)
