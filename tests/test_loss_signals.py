"""train.signals_from_loss: entropy and attention methods read TRL's loss forward instead of a scoring
forward; the signals it gives equal the separately scored ones, and the weights are those of each
micro-batch."""

from __future__ import annotations

import pytest
import torch

from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, ScoringParams, TrainParams
from tokencredit.signals import TokenSignals, score_policy
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import build_trainer, grpo_config, grpo_dataset
from tokencredit.recipe import resolve

# Two micro-batches of 4 completions per optimizer step; the entropy penalty gives every step a gradient.
TRAIN = TrainParams(
    max_steps=1, prompts_per_step=2, num_generations=4, micro_batch_size=4, max_completion_length=10,
    entropy_penalty=0.5, save_steps=100, signals_from_loss=True,
)  # fmt: skip


def trainer_for(tiny_world, tmp_path, method: str, train=TRAIN):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    return build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, MethodSpec(weighting=method),
        ScoringParams(chunk_size=7), get_algorithm("grpo"), seed=0, checkpoint_dir=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["entropy_topk", "atrl"])
def test_the_loss_forward_gives_the_scored_signals_per_micro_batch(tiny_world, tmp_path, method):
    trainer = trainer_for(tiny_world, tmp_path, method)
    assert trainer.signals_from_loss
    seen = []
    compute_loss, weights = trainer.compute_loss, trainer._weights

    def keep_inputs(model, inputs, *args, **kwargs):
        trainer.micro_batch = dict(inputs)
        return compute_loss(model, inputs, *args, **kwargs)

    def score_alongside(local: TokenSignals, advantages):
        # Scored separately, by the same policy (the update comes after the loss), on the same micro-batch.
        scored = score_policy(
            trainer.model, trainer.micro_batch, needs=trainer.needs, chunk_size=7,
            temperature=trainer.temperature, attention_layers=trainer.attention_layers,
        )  # fmt: skip
        w, guarded = weights(local, advantages)
        seen.append((local, scored, w, trainer.weighting(TokenSignals(mask=scored.mask, **{n: scored.require(n) for n in trainer.needs}), advantages)))
        return w, guarded

    trainer.compute_loss, trainer._weights = keep_inputs, score_alongside
    trainer.train()
    assert len(seen) == 2  # one weighting per micro-batch, none at generation
    for local, scored, w, expected in seen:
        assert local.mask.shape[0] == 4
        for name in trainer.needs:
            torch.testing.assert_close(local.require(name), scored.require(name), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w, expected, atol=1e-5, rtol=1e-5)
    assert "weights/weight_mean" in trainer.state.log_history[0]


def test_methods_reading_other_signals_keep_their_scoring_forward(tiny_world, tmp_path):
    assert not trainer_for(tiny_world, tmp_path, "tor").signals_from_loss
    assert not trainer_for(tiny_world, tmp_path, "uniform").signals_from_loss


def one_update(tiny_world, tmp_path, method: str, signals_from_loss: bool) -> torch.Tensor:
    """The parameter change of one step with a reward that varies in every group (non-zero advantages)."""
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    train = TRAIN.model_copy(update={"micro_batch_size": None, "signals_from_loss": signals_from_loss})
    trainer = WeightedGRPOTrainer(
        model=model, processing_class=processor,
        args=grpo_config(train, get_algorithm("grpo"), [1.0], seed=0, output_dir=tmp_path / f"{method}-{signals_from_loss}"),
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
        reward_funcs=[lambda completion_ids, **_: [float(i % 2) for i in range(len(completion_ids))]],
        recipe=resolve(method, MethodSpec(weighting=method)),
        chunk_size=7, attention_layers=[-1], signals_from_loss=signals_from_loss,
    )  # fmt: skip
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()]) - before


@pytest.mark.parametrize("method", ["entropy_topk", "atrl"])
def test_with_one_micro_batch_the_loss_forward_trains_as_the_scoring_forward(tiny_world, tmp_path, method):
    scored = one_update(tiny_world, tmp_path, method, signals_from_loss=False)
    reused = one_update(tiny_world, tmp_path, method, signals_from_loss=True)
    uniform = one_update(tiny_world, tmp_path, "uniform", signals_from_loss=False)
    assert scored.abs().max() > 0 and not torch.allclose(scored, uniform, atol=1e-9)
    torch.testing.assert_close(reused, scored, atol=1e-7, rtol=1e-4)
