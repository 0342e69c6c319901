"""SFT: the loss falls, the same seed gives the same weights, a fixed step count or the target accuracy stops training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokencredit import synthetic
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import DataParams, ModelParams, Params, SFTParams, merged_params
from tokencredit.sft import batches, history_jsonl, train_sft
from tokencredit.tiny_vlm import build_base

SMALL = ModelParams(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_hidden_size=32, vocab_size=300,
)  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
DATA = DataParams(n_train=32, n_validation=4, n_test=4, n_test_ood=4)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    data_dir = tmp_path_factory.mktemp("data")
    synthetic.write_splits(DATA, data_dir)
    base_dir = tmp_path_factory.mktemp("models") / "base"
    build_base(SMALL, synthetic.corpus(DATA), base_dir)
    return data_dir, base_dir


def no_eval(model, processor, df) -> dict[str, float]:
    return {"val_accuracy": 0.0}


def run(setup, params: SFTParams, eval_fn=no_eval):
    data_dir, base_dir = setup
    model, processor = load_policy(base_dir, SMALL)
    logged = []
    history = train_sft(
        model, processor, load_split(data_dir, "train"), load_split(data_dir, "validation"), data_dir, params,
        eval_fn, lambda record, step: logged.append((step, record)),
    )  # fmt: skip
    assert logged == [(r["step"], r) for r in history]
    return model, history


def test_loss_falls(setup):
    _, history = run(setup, SFTParams(max_steps=12, batch_size=8, learning_rate=1e-2, eval_every=4, target_accuracy=None))
    assert [r["step"] for r in history] == [4, 8, 12]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]


def test_same_seed_same_weights(setup):
    params = SFTParams(max_steps=3, batch_size=4, eval_every=3, target_accuracy=None, text_only_fraction=0.5)
    first, _ = run(setup, params)
    second, _ = run(setup, params)
    other, _ = run(setup, params.model_copy(update={"seed": 1}))
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_stops_at_target_accuracy(setup):
    params = SFTParams(max_steps=50, batch_size=2, eval_every=2, target_accuracy=0.5)
    _, history = run(setup, params, eval_fn=lambda m, p, df: {"val_accuracy": 0.5, "val_accuracy_no_image": 0.0})
    assert [r["step"] for r in history] == [2]
    assert json.loads(history_jsonl(history)) == history[0]


def test_fixed_step_count_ignores_validation_accuracy(setup):
    """Without a target the run's length cannot depend on validation numbers that rounding moves."""
    params = SFTParams(max_steps=5, batch_size=2, eval_every=2)
    assert params.target_accuracy is None  # the default
    _, history = run(setup, params, eval_fn=lambda m, p, df: {"val_accuracy": 1.0, "val_accuracy_no_image": 1.0})
    assert [r["step"] for r in history] == [2, 4, 5]


def test_default_params_stop_sft_at_a_fixed_step():
    sft = Params.model_validate(merged_params(ROOT / "params/default.yaml")).sft
    assert sft.target_accuracy is None


def test_batches_cover_every_row_each_epoch():
    it = batches(10, 4, seed=0)
    first_epoch = next(it) + next(it) + next(it)[:2]
    assert sorted(first_epoch) == list(range(10))
    assert next(batches(10, 4, seed=0)) == next(batches(10, 4, seed=0))
