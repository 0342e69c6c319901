"""Evaluation: grading, generation shapes, and the results/eval JSON contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokencredit import synthetic
from tokencredit.dataset import load_split
from tokencredit.evaluation import evaluate_policy, generate, grade, load_images
from tokencredit.models import load_policy
from tokencredit.params import DataParams, EvalParams, ModelParams
from tokencredit.tiny_vlm import build_base

SMALL = ModelParams(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_hidden_size=32, vocab_size=300,
)  # fmt: skip
DATA = DataParams(families=["count_color", "exists"], n_train=16, n_validation=4, n_test=6, n_test_ood=4)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    synthetic.write_splits(DATA, data_dir)
    base_dir = tmp_path_factory.mktemp("models") / "base"
    build_base(SMALL, synthetic.corpus(DATA), base_dir)
    model, processor = load_policy(base_dir, SMALL)
    return model, processor, data_dir


def test_grade_reads_the_answer_tag():
    assert grade(["<think>red red. red 2</think><answer>2</answer>"], "2", "integer") == [1]
    assert grade(["<think>red. red 1</think><answer>1</answer>", "2", ""], "2", "integer") == [0, 0, 0]
    assert grade(["<think>blue circle. blue circle 1</think><answer>yes</answer>"], "yes", "yes_no") == [1]


def test_generate_shapes_and_greedy_determinism(policy):
    model, processor, data_dir = policy
    df = load_split(data_dir, "test")
    questions, images = list(df["question"]), load_images(df, data_dir)
    greedy = generate(model, processor, questions, images, max_new_tokens=6, batch_size=4)
    assert [len(g) for g in greedy] == [1] * len(df)
    assert greedy == generate(model, processor, questions, images, max_new_tokens=6, batch_size=2)
    sampled = generate(model, processor, questions, None, n=3, temperature=1.0, max_new_tokens=6, batch_size=4, seed=1)
    assert [len(s) for s in sampled] == [3] * len(df)
    assert sampled == generate(model, processor, questions, None, n=3, temperature=1.0, max_new_tokens=6, batch_size=4, seed=1)
    with pytest.raises(ValueError, match="greedy"):
        generate(model, processor, questions, None, n=2, temperature=0.0)


def test_evaluate_policy_follows_the_eval_contract(policy):
    model, processor, data_dir = policy
    df = load_split(data_dir, "test")
    params = EvalParams(k=2, max_new_tokens=6, batch_size=4)
    result = evaluate_policy(model, processor, df, Path(data_dir), params, policy="sft", split="test")
    assert set(result) == {
        "policy", "split", "n", "k", "greedy_accuracy", "avg_at_k", "greedy_accuracy_no_image", "per_family", "per_example",
    }  # fmt: skip
    assert (result["policy"], result["split"], result["n"], result["k"]) == ("sft", "test", 6, 2)
    assert set(result["per_family"]) == {"count_color", "exists"}
    assert sum(f["n"] for f in result["per_family"].values()) == 6
    assert all(set(f) == {"n", "greedy_accuracy", "avg_at_k"} for f in result["per_family"].values())
    assert [e["id"] for e in result["per_example"]] == list(df["id"])
    for e in result["per_example"]:
        assert set(e) == {"id", "family", "greedy_correct", "avg_at_k", "greedy_correct_no_image"}
        assert e["greedy_correct"] in (0, 1) and e["greedy_correct_no_image"] in (0, 1) and e["avg_at_k"] in (0, 0.5, 1)
    assert 0 <= result["greedy_accuracy_no_image"] <= 1

    with_image_only = params.model_copy(update={"without_image": False})
    no_image = evaluate_policy(model, processor, df, data_dir, with_image_only, "sft", "test")
    assert no_image["greedy_accuracy_no_image"] is None
    assert all(e["greedy_correct_no_image"] is None for e in no_image["per_example"])
    assert no_image["greedy_accuracy"] == result["greedy_accuracy"]
