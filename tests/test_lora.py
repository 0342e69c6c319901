"""LoRA (train.lora) on the tiny model: only the adapter trains, a resumed run equals an uninterrupted
one, the token signals come from the adapted policy, and its model directory (adapter + base
reference) loads as the adapted policy."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import TrainerCallback

from tokencredit.algorithms import get_algorithm
from tokencredit.batching import encode_for_loss
from tokencredit.dataset import load_image, load_split
from tokencredit.manifest import write_manifest
from tokencredit.models import BASE_FILE, check_checkpoint, load_policy, save_policy
from tokencredit.params import LoraParams, MethodSpec, ModelParams, ScoringParams, TrainParams
from tokencredit.scoring import _trl_batch
from tokencredit.signals import score_policy
from tokencredit.training import build_trainer, last_checkpoint

# The tiny random policy earns no accuracy reward; the entropy penalty gives every step a gradient.
# PGPO scores a counterfactual forward (mask_visual_attention) besides the real one.
LORA = LoraParams(rank=4, alpha=8.0)
TRAIN = TrainParams(
    max_steps=3, prompts_per_step=2, num_generations=4, max_completion_length=10, learning_rate=1e-2,
    entropy_penalty=0.5, save_steps=1, lora=LORA,
)  # fmt: skip
METHOD = MethodSpec(weighting="pgpo")
METHOD_COUNTERFACTUAL = "mask_visual_attention"  # PGPO's default


class StopAfterSave(TrainerCallback):
    """Ends training right after the checkpoint of `step`: a run interrupted there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def lora_trainer(tiny_world, checkpoints, train=TRAIN, callbacks=()):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    return build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, METHOD, ScoringParams(),
        get_algorithm("grpo"), seed=0, checkpoint_dir=checkpoints, callbacks=list(callbacks),
    )  # fmt: skip


def adapter_state(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """An uninterrupted LoRA run, the base weights it started from, and its saved model directory."""
    trainer = lora_trainer(tiny_world, tmp_path_factory.mktemp("uninterrupted"))
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" not in n}
    trainer.train()
    out = tmp_path_factory.mktemp("runs") / "grpo-pgpo-s0"
    save_policy(trainer.model, trainer.processing_class, out, base=tiny_world[1])
    write_manifest(out)
    return trainer, base, out


def test_a_lora_run_trains_only_the_adapter(trained):
    trainer, base, _ = trained
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not [n for n in trainable if ".visual." in n]  # freeze_vision_tower: no adapter in the vision tower
    for name, p in trainer.model.named_parameters():
        if name in base:
            assert torch.equal(p, base[name]), f"{name} is not an adapter weight but changed"
    lora_b = [p for n, p in trainer.model.named_parameters() if ".lora_B." in n]  # peft starts B at zero
    assert any(p.abs().max() > 0 for p in lora_b)


def test_an_unfrozen_vision_tower_gets_adapters_too(tiny_world, tmp_path):
    train = TRAIN.model_copy(update={"lora": LORA.model_copy(update={"freeze_vision_tower": False})})
    trainer = lora_trainer(tiny_world, tmp_path, train)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any(".visual." in n for n in trainable) and all("lora_" in n for n in trainable)


def test_a_resumed_lora_run_equals_an_uninterrupted_one(tiny_world, tmp_path, trained):
    first = lora_trainer(tiny_world, tmp_path, callbacks=[StopAfterSave(1)])
    first.train()
    assert first.state.global_step == 1
    resume = last_checkpoint(tmp_path)
    assert (resume / "adapter_model.safetensors").is_file() and not (resume / "model.safetensors").exists()
    second = lora_trainer(tiny_world, tmp_path)
    second.train(resume_from_checkpoint=str(resume))
    expected = adapter_state(trained[0])
    resumed = adapter_state(second)
    assert resumed.keys() == expected.keys()
    assert all(torch.equal(resumed[n], expected[n]) for n in expected)
    assert not all(torch.equal(adapter_state(first)[n], expected[n]) for n in expected)  # the resume did train


def test_resuming_from_another_adapter_fails_naming_the_checkpoint(tiny_world, tmp_path, trained):
    first = lora_trainer(tiny_world, tmp_path / "a", callbacks=[StopAfterSave(1)])
    first.train()
    other = TRAIN.model_copy(update={"lora": LORA.model_copy(update={"target_modules": ["q_proj", "v_proj"]})})
    with pytest.raises(ValueError, match="holds another adapter"):
        lora_trainer(tiny_world, tmp_path / "b", other).train(resume_from_checkpoint=str(last_checkpoint(tmp_path / "a")))


def scoring_batch(tiny_world, processor):
    """Four train prompts with fixed completions, in TRL's batch layout."""
    data_dir, _ = tiny_world
    rows = load_split(data_dir, "train").head(4)
    images = [load_image(data_dir, p) for p in rows["image"]]
    encoded = encode_for_loss(processor, list(rows["question"]), images, list(rows["target"]))
    return _trl_batch(encoded, torch.device("cpu"))


def test_the_signals_come_from_the_adapted_policy(tiny_world, trained):
    trainer, _, out = trained
    batch = scoring_batch(tiny_world, trainer.processing_class)
    # The trainer's own scoring (real and counterfactual forwards) with the adapter it trains ...
    during = trainer._signals(batch, inputs=[])
    # ... equals the saved run's policy as rollouts, grading and scoring load it (base + adapter, merged) ...
    merged, _ = load_policy(out, ModelParams())
    after = score_policy(merged, batch, needs={"vis_k3"}, counterfactual=METHOD_COUNTERFACTUAL, chunk_size=7)
    # ... and differs from the base the adapter started from.
    base, _ = load_policy(tiny_world[1], ModelParams())
    before = score_policy(base, batch, needs={"vis_k3"}, counterfactual=METHOD_COUNTERFACTUAL, chunk_size=7)
    for name in ("logp", "entropy", "logp_cf", "vis_k3"):
        torch.testing.assert_close(getattr(during, name), getattr(after, name), atol=1e-5, rtol=1e-5)
    assert (during.logp - before.logp).abs().max() > 1e-3
    assert (during.logp_cf - before.logp_cf).abs().max() > 1e-3


def test_the_model_directory_holds_the_adapter_and_its_base(tiny_world, trained, tmp_path):
    _, base_dir = tiny_world
    out = trained[2]
    check_checkpoint(out)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert not (out / "README.md").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"])  # byte-stable for the manifest
    reference = json.loads((out / BASE_FILE).read_text())
    assert reference["path"] == str(base_dir)

    # A copy of both, the adapter naming its base relative to itself, loads as the same policy ...
    base_copy, adapter_copy = tmp_path / "base", tmp_path / "run"
    shutil.copytree(base_dir, base_copy)
    shutil.copytree(out, adapter_copy)
    (adapter_copy / BASE_FILE).write_text(json.dumps({**reference, "path": "../base"}))
    write_manifest(base_copy)
    model, _ = load_policy(adapter_copy, ModelParams())
    expected, _ = load_policy(out, ModelParams())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))
    # ... until the base changes under the adapter: refused, naming both.
    (base_copy / "tokenizer_config.json").write_text((base_copy / "tokenizer_config.json").read_text() + " ")
    write_manifest(base_copy)
    with pytest.raises(ValueError, match=f"{adapter_copy}.*trained from {base_copy}.*has changed since"):
        load_policy(adapter_copy, ModelParams())
