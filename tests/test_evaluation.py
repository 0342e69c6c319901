"""Evaluation: the results/eval JSON contract, graded from cached decodings without generating."""

from __future__ import annotations

import pandas as pd
import pytest

from tokencredit import synthetic
from tokencredit.dataset import load_split
from tokencredit.evaluation import completions_by_row, grade_rollouts
from tokencredit.graders import score
from tokencredit.manifest import write_manifest
from tokencredit.params import DECODINGS, DataParams, ModelParams, RolloutParams
from tokencredit.rollouts import ensure_rollouts
from tokencredit.tiny_vlm import build_base

SMALL = ModelParams(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_hidden_size=32, vocab_size=300,
)  # fmt: skip
DATA = DataParams(families=["count_color", "exists"], n_train=16, n_validation=4, n_test=6, n_test_ood=4)
ROLLOUTS = RolloutParams(num_samples=3, max_new_tokens=6, batch_size=4)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """(the test split, its cached decodings by name) of a small untrained policy."""
    data_dir = tmp_path_factory.mktemp("data")
    synthetic.write_splits(DATA, data_dir)
    policy = tmp_path_factory.mktemp("models") / "sft"
    build_base(SMALL, synthetic.corpus(DATA), policy)
    write_manifest(policy)
    out = tmp_path_factory.mktemp("rollouts")
    decodings = {d: ensure_rollouts(policy, data_dir, "test", ROLLOUTS, d, SMALL, out / f"{d}.parquet", out / d) for d in DECODINGS}
    return load_split(data_dir, "test"), decodings


def test_score_reads_the_answer_tag():
    assert score("<think>red red. red 2</think><answer>2</answer>", "2", "integer", (), "tags") == 1
    assert [score(c, "2", "integer", (), "tags") for c in ("<think>red. red 1</think><answer>1</answer>", "2", "")] == [0, 0, 0]
    assert score("<think>blue circle. blue circle 1</think><answer>yes</answer>", "yes", "yes_no", (), "tags") == 1


def test_grade_rollouts_follows_the_eval_contract(cached):
    frame, d = cached
    result = grade_rollouts(frame, d["sampled"], d["greedy"], d["no_image"], 2, "sft", "test")
    assert set(result) == {
        "policy", "split", "source", "n", "k", "greedy_accuracy", "avg_at_k", "pass_at_k", "greedy_accuracy_no_image",
        "per_family", "per_example", "rule_based", "skipped_rows",
    }  # fmt: skip
    assert result["rule_based"] is False and result["skipped_rows"] == []  # a synthetic split: exact grading, nothing left out
    assert (result["policy"], result["split"], result["source"], result["n"], result["k"]) == ("sft", "test", "synthetic", 6, 2)
    assert set(result["per_family"]) == {"count_color", "exists"}
    assert sum(f["n"] for f in result["per_family"].values()) == 6
    assert [e["id"] for e in result["per_example"]] == list(frame["id"])
    for e in result["per_example"]:
        assert set(e) == {"id", "family", "greedy_correct", "avg_at_k", "greedy_correct_no_image", "prediction"}
        assert e["greedy_correct"] in (0, 1) and e["greedy_correct_no_image"] in (0, 1) and e["avg_at_k"] in (0, 0.5, 1)
    # Graded from the caches: greedy accuracy is the cached greedy completions' rewards.
    assert result["greedy_accuracy"] == pytest.approx(d["greedy"]["accuracy_reward"].mean())
    assert result["greedy_accuracy_no_image"] == pytest.approx(d["no_image"]["accuracy_reward"].mean())
    first_two = d["sampled"][d["sampled"]["sample"] < 2]
    assert result["avg_at_k"] == pytest.approx(first_two["accuracy_reward"].mean())
    assert result["pass_at_k"] == pytest.approx(first_two.groupby("id")["accuracy_reward"].max().mean())

    without = grade_rollouts(frame, d["sampled"], d["greedy"], None, None, "sft", "test")
    assert without["k"] == 3 and without["greedy_accuracy_no_image"] is None
    assert all(e["greedy_correct_no_image"] is None for e in without["per_example"])
    assert without["greedy_accuracy"] == result["greedy_accuracy"]


def test_caches_that_do_not_cover_the_split_are_refused(cached):
    frame, d = cached
    with pytest.raises(ValueError, match="sampled holds \\[3\\] completions per row, grading wants 4"):
        completions_by_row(frame, d["sampled"], 4, "sampled")
    partial = d["greedy"][d["greedy"]["id"] != frame["id"].iloc[2]]
    with pytest.raises(ValueError, match=f"greedy has no completions of row id\\(s\\) \\['{frame['id'].iloc[2]}'\\]"):
        grade_rollouts(frame, d["sampled"], partial, None, 2, "sft", "test")
    extra = pd.concat([d["sampled"], d["sampled"].head(1)])
    with pytest.raises(ValueError, match="\\[3, 4\\] completions per row"):
        completions_by_row(frame, extra, None, "sampled")
