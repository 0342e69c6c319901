"""Recipes in training (issue 22): an auxiliary loss and a rollout transform reach TRL's step on the tiny model."""

from __future__ import annotations

import torch

from tests.test_trainer import TRAIN
from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams
from tokencredit.recipe import resolve
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import grpo_config, grpo_dataset


def make_trainer(tiny_world, out, spec: MethodSpec, train=TRAIN):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=grpo_config(train, get_algorithm("grpo"), [1.0], seed=0, output_dir=out),
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
        reward_funcs=[lambda completion_ids, **_: [float(i % 2) for i in range(len(completion_ids))]],
        recipe=resolve("m", spec),
        chunk_size=7,
        attention_layers=[-1],
    )


def train(tiny_world, out, spec: MethodSpec, train=TRAIN) -> tuple[torch.Tensor, WeightedGRPOTrainer]:
    trainer = make_trainer(tiny_world, out, spec, train)
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()]) - before, trainer


def test_auxiliary_losses_reach_the_update(tiny_world, tmp_path):
    # Two updates per generation: KL-Cov's |log π_θ − log π_old| has no gradient on-policy (losses/kl_cov.py).
    schedule = TRAIN.model_copy(update={"max_steps": 2, "updates_per_generation": 2, "logging_steps": 2})
    uniform, _ = train(tiny_world, tmp_path / "u", MethodSpec(), schedule)
    hparams = {  # visible on the tiny model
        "papo": {"gamma": 10.0}, "kl_cov": {"kl_cov_ratio": 0.5}, "dvrp": {"nec_coef": 10.0, "rob_coef": 10.0}, "cfpo": {"gamma": 10.0},
    }  # fmt: skip
    for loss in ("papo", "kl_cov", "dvrp", "cfpo"):
        delta, trainer = train(tiny_world, tmp_path / loss, MethodSpec(loss={"name": loss, "hparams": hparams[loss]}), schedule)
        logged = trainer.state.log_history[0]
        assert f"aux_loss/{loss}" in logged and torch.isfinite(torch.tensor(logged[f"aux_loss/{loss}"]))
        assert not torch.allclose(delta, uniform, atol=1e-9), loss


def test_noisy_rollout_generates_from_noised_images_and_trains_on_the_clean_ones(tiny_world, tmp_path):
    clean = make_trainer(tiny_world, tmp_path / "clean", MethodSpec())
    noisy = make_trainer(tiny_world, tmp_path / "noisy", MethodSpec(transform={"name": "noisy_rollout"}))
    seen = []
    generate = noisy.processing_class.__class__.__call__

    def spy(self, *args, **kwargs):  # the processor's pixels for generation and for the batch
        out = generate(self, *args, **kwargs)
        seen.append(out.get("pixel_values"))
        return out

    rows = [noisy.train_dataset[i] for i in range(2)]
    inputs = [row for row in rows for _ in range(noisy.num_generations)]
    batches = []
    for trainer in (clean, noisy):
        trainer.model.train()
        trainer.processing_class.__class__.__call__ = spy
        try:
            batches.append(trainer._generate_and_score_completions(inputs))
        finally:
            trainer.processing_class.__class__.__call__ = generate
    torch.testing.assert_close(batches[1]["pixel_values"], batches[0]["pixel_values"])  # the update sees the clean images
    clean_pixels = batches[0]["pixel_values"]
    generated = [torch.as_tensor(p, dtype=clean_pixels.dtype) for p in seen if p is not None]
    assert any(p.shape == clean_pixels.shape and not torch.equal(p, clean_pixels) for p in generated)  # generation saw noised ones


def test_trl_loss_variants_train_with_token_weights(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    for algo, loss_type, level in (("cispo", "cispo", "token"), ("sapo", "sapo", "token"), ("gspo", "grpo", "sequence")):
        config = grpo_config(TRAIN, get_algorithm(algo), [1.0], seed=0, output_dir=tmp_path / algo)
        assert (config.loss_type, config.importance_sampling_level) == (loss_type, level)
        model, processor = load_policy(base_dir, ModelParams())
        trainer = WeightedGRPOTrainer(
            model=model, processing_class=processor, args=config,
            train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
            reward_funcs=[lambda completion_ids, **_: [float(i % 2) for i in range(len(completion_ids))]],
            recipe=resolve("m", MethodSpec(weighting="entropy_topk")), chunk_size=7, attention_layers=[-1],
        )  # fmt: skip
        before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
        trainer.train()
        logged = trainer.state.log_history[0]
        assert torch.isfinite(torch.tensor(logged["loss"])) and "weights/weight_mean" in logged, algo
        assert not torch.equal(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]), before), algo
