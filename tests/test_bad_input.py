"""Bad input gives a clear error naming the item, or is guarded and counted; nothing written is lost.

Cases tested elsewhere (README's table lists them all): params in test_params and
test_distributed, splits and images in test_dataset, policy checkpoints in test_models, rollout
caches in test_rollouts, responses with no valid tokens in test_weighting, MLflow in
test_tracking and test_faults, interrupted jobs and cut-short checkpoints in test_faults.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from pathlib import Path

import pytest
import torch

import steps.train
import tokencredit.training as training
from steps.common import section
from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy, save_policy
from tokencredit.params import MethodSpec, ModelParams, ParamsError, ScoringParams, TrainParams, validate
from tokencredit.signals import LABEL_SIGNALS, SIGNALS, TokenSignals
from tokencredit.trainer import finite_signals
from tokencredit.training import MetricsLogger, build_trainer, check_checkpoint
from tokencredit.weighting import build_weighting, registered
from test_faults import fake_checkpoint

NAN, INF = float("nan"), float("inf")


# -- params and arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"train": {"algos": ["ppo"]}}, "train.algos.0: Input should be 'grpo', 'dapo', 'dr_grpo', 'cispo', 'sapo' or 'gspo'"),
        ({"train": {"max_steps": 5, "logging_steps": 10}}, "logging_steps (10) > max_steps (5): no step would be logged"),
        ({"train": {"max_completion_length": 16, "overlong_cache": 32}}, "overlong_cache (32) > max_completion_length (16)"),
    ],
)
def test_contradictory_train_params_are_named(raw, expected):
    with pytest.raises(ParamsError, match="train") as err:
        validate(raw)
    assert expected in str(err.value)


def test_a_malformed_section_argument_names_the_key():
    parse = section(TrainParams)
    with pytest.raises(argparse.ArgumentTypeError, match=r"max_steps\n.*greater than or equal to 1"):
        parse('{"max_steps": 0}')
    with pytest.raises(argparse.ArgumentTypeError, match="Invalid JSON"):
        parse('{"max_steps": ')


def test_an_unknown_algorithm_stops_the_step_before_any_work(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train", "--algo", "ppo"])
    with pytest.raises(SystemExit):
        steps.train.main()
    assert "argument --algo: invalid choice: 'ppo' (choose from 'cispo', 'dapo', 'dr_grpo', 'grpo', 'gspo', 'sapo')" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown algorithm 'ppo'; choose one of \['cispo', 'dapo', 'dr_grpo', 'grpo', 'gspo', 'sapo'\]"):
        get_algorithm("ppo")


def test_a_corrupt_split_file_is_named(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=f"{tmp_path}/train.parquet.*corrupted or this is not a parquet file"):
        load_split(tmp_path, "train")


# -- checkpoints a run resumes from -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda c: (c / "optimizer.pt").unlink(), "lacks optimizer.pt"),
        (lambda c: (c / "optimizer.pt").write_bytes(b"not a torch file"), "is damaged: optimizer.pt"),
        (lambda c: (c / "rng_state.pth").write_bytes((c / "rng_state.pth").read_bytes()[:50]), "is damaged: rng_state.pth"),
        (lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 20), "is damaged: model.safetensors"),
    ],
    ids=["missing optimizer", "garbage optimizer", "truncated rng state", "garbage weights"],
)
def test_a_damaged_resume_checkpoint_is_named_and_kept(tmp_path, damage, expected):
    checkpoint = fake_checkpoint(tmp_path, 3)
    damage(checkpoint)
    with pytest.raises(ValueError, match=f"checkpoint {checkpoint} {expected}.*delete {checkpoint} to resume"):
        check_checkpoint(checkpoint, ("optimizer.pt", "scheduler.pt"))
    assert checkpoint.is_dir()  # the user decides: nothing is deleted


def test_corrupt_metrics_before_the_checkpoint_are_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not JSON"):
        MetricsLogger(path).resume(2)
    assert path.read_text() == '{"step": 1}\nnot json\n{"step": 2}\n'


# -- non-finite rewards and signals -----------------------------------------------------------------


def test_non_finite_rewards_are_guarded_counted_and_logged(tiny_world, tmp_path, monkeypatch, caplog):
    data_dir, base_dir = tiny_world

    def broken_reward(completions, **_) -> list[float]:
        # A grader fault: NaN and +-inf beside ordinary rewards, in the first group of each batch.
        return [NAN, INF, -INF, 1.0] + [float(i % 2) for i in range(len(completions) - 4)]

    monkeypatch.setattr(training, "accuracy_reward", broken_reward)
    model, processor = load_policy(base_dir, ModelParams())
    train = TrainParams(max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=8, learning_rate=1e-2)
    trainer = build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, MethodSpec(weighting="entropy_topk"),
        ScoringParams(), get_algorithm("grpo"), 0, tmp_path,
    )  # fmt: skip
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["guard/nonfinite_rewards"] == 3 and logged["guard/nonfinite_signals"] == 0
    assert math.isfinite(logged["loss"]) and math.isfinite(logged["reward"])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert "3 non-finite rewards guarded" in caplog.text


def test_non_finite_signals_leave_the_weighting_and_empty_responses_weigh_zero():
    mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True, True, True, True]])
    values = torch.rand(3, 4) * mask
    values[0, 1], values[1, :2], values[2, 3] = NAN, INF, -INF  # row 1 keeps no valid token
    scored = [name for name in SIGNALS if name not in LABEL_SIGNALS]  # every signal some weighting reads
    labels = {"role": torch.ones(3, 4) * mask, "on_target": torch.ones(3, 4) * mask}
    raw = TokenSignals(mask=mask, **labels, **{name: values.clone() for name in scored})
    signals, guarded = finite_signals(raw)
    assert guarded == 4
    assert signals.mask.tolist() == [[True, False, True, False], [False] * 4, [True, True, True, False]]
    for name in registered():
        w = build_weighting(name)(signals, torch.tensor([1.0, -1.0, 0.5]))
        assert torch.isfinite(w).all() and (w >= 0).all(), name
        assert (w[~signals.mask] == 0).all() and (w[1] == 0).all(), name


# -- output directories -----------------------------------------------------------------------------


class FailingModel:
    """Writes half a weights file, then fails as a full or read-only disk does."""

    def __init__(self, code: int) -> None:
        self.code = code

    def save_pretrained(self, directory: Path) -> None:
        path = Path(directory) / "model.safetensors"
        path.write_bytes(b"half")
        raise OSError(self.code, os.strerror(self.code), str(path))


class Processor:
    def save_pretrained(self, directory: Path) -> None:
        (Path(directory) / "tokenizer.json").write_text("{}")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_names_the_output_and_keeps_the_previous_one(tmp_path, code):
    out = tmp_path / "models" / "sft"
    out.mkdir(parents=True)
    (out / "model.safetensors").write_text("previous weights")
    with pytest.raises(OSError, match=rf"{os.strerror(code)}: '{tmp_path}/models/\.sft\.\w+\.tmp/model\.safetensors'"):
        save_policy(FailingModel(code), Processor(), out)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["sft"]  # no temporary left behind
    assert (out / "model.safetensors").read_text() == "previous weights"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_named(tmp_path):
    models = tmp_path / "models"
    (models / "sft").mkdir(parents=True)
    models.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=str(models)):
            save_policy(FailingModel(errno.EROFS), Processor(), models / "sft")
    finally:
        models.chmod(0o755)
    assert list((models / "sft").iterdir()) == []


def test_resume_files_holding_arbitrary_objects_are_refused(tmp_path):
    """Resume files load with weights_only, as the Trainer loads them: tensors and numpy arrays, no other object."""
    checkpoint = fake_checkpoint(tmp_path, 1)
    torch.save({"state": argparse.Namespace(code="anything")}, checkpoint / "optimizer.pt")
    with pytest.raises(ValueError, match="is damaged: optimizer.pt: UnpicklingError"):
        check_checkpoint(checkpoint)
