"""Token analysis on hand-made score tables: AUROC (+ bootstrap), precision, selections, overlap, shift."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokencredit.analysis import (
    Ranking,
    analyze,
    concentration,
    jaccard,
    load_scores,
    precision_at,
    selected,
    weighted_auroc,
)
from tokencredit.params import AnalysisParams

ROLE_CYCLE = ["format", "perception", "perception", "format", "reasoning", "reasoning", "format"]


def fake_scores(policies=("sft", "grpo-uniform-s0"), n_prompts=6, n_samples=2, families=("count_color",), split="test", seed=0) -> pd.DataFrame:
    """A score table shaped like tokencredit.scoring's: entropy finds reasoning tokens, vis_absdiff perception ones."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, policy in enumerate(policies):
        rows = []
        for prompt, sample in itertools.product(range(n_prompts), range(n_samples)):
            response = prompt * n_samples + sample
            for position, role in enumerate(ROLE_CYCLE):
                rows.append({
                    "policy": policy, "split": split, "id": f"{split}-{prompt:06d}", "sample": sample,
                    "family": families[prompt % len(families)], "question": f"How many red shapes? ({prompt})", "answer": "2",
                    "accuracy_reward": float((prompt + sample) % 2), "format_reward": 1.0, "response": response,
                    "position": position, "token_id": position, "token": f"t{position} " if role != "format" else "<tag>", "role": role,
                })  # fmt: skip
        frame = pd.DataFrame(rows)
        noise = rng.normal(0, 0.1, len(frame))
        frame["signal.entropy"] = (frame["role"] == "reasoning") * (1.0 + 0.5 * k) + noise
        frame["signal.vis_absdiff.drop_image"] = (frame["role"] == "perception") * 1.0 + rng.uniform(0, 0.5, len(frame))
        frame["signal.logp"] = -rng.uniform(0, 3, len(frame))
        frame["weight.uniform"] = 1.0
        top = frame["signal.entropy"] >= frame["signal.entropy"].quantile(0.7)
        frame["weight.entropy_topk"] = top * (1 / top.mean())
        frame["weight.atrl"] = np.where(frame["role"] == "perception", 1.5, 0.5)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def brute_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.integers(0, 3)), min_size=1, max_size=30))
def test_weighted_auroc_is_mann_whitney_with_ties_and_copies(tokens):
    scores = np.array([s for s, _, _ in tokens], dtype=float)  # few distinct values: many ties
    positive = np.array([p for _, p, _ in tokens])
    copies = np.array([c for _, _, c in tokens])
    ranking = Ranking.of(scores)
    got = weighted_auroc(ranking, positive, copies[ranking.order][None, :].astype(np.float32))[0]
    want = brute_auroc(np.repeat(scores, copies), np.repeat(positive, copies))
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_precision_at_ratios():
    scores = np.array([0.9, 0.8, 0.8, 0.1, 0.0])
    positive = np.array([True, False, True, False, True])
    # top 1: [T]; top 3 (ceil 0.5 * 5): [T, F, T]; all: 3/5
    assert precision_at(scores, positive, [0.2, 0.5, 1.0]) == pytest.approx([1.0, 2 / 3, 0.6])
    assert math.isnan(precision_at(scores, positive, [0.0])[0])


def test_selected_tokens_rule():
    assert selected(np.ones(4)).all()  # uniform: every token
    assert selected(np.array([0.0, 5.0, 0.0, 0.0, 0.0])).tolist() == [False, True, False, False, False]  # kept tokens
    assert selected(np.array([0.0, 0.5, 1.0, 0.5, 0.0])).tolist() == [False, True, True, True, False]  # ToR: T_r and T_p
    assert selected(np.array([1.8, 0.6, 0.6, 0.6, 0.6])).tolist() == [True, False, False, False, False]  # AT-RL anchors


def test_jaccard_and_concentration():
    a, b = np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)
    assert jaccard(a, b) == pytest.approx(1 / 3) and math.isnan(jaccard(~a & ~b & a, ~a & ~b & a))
    frame = pd.DataFrame({"response": [0, 0, 0, 0, 1, 1], "x": [4.0, 0.0, 0.0, 0.0, 1.0, 1.0]})
    # top ceil(0.25 n): response 0 holds all its mass on 1 token, response 1 half of it
    assert concentration(frame, "x", 0.25) == pytest.approx(0.75)


def test_perfect_signals_and_their_intervals():
    frame = fake_scores(policies=("sft",))
    result = analyze(frame, [], AnalysisParams(n_bootstrap=50))
    auroc = {(r["signal"], r["role"]): r for r in result["auroc"]}
    perception = auroc["vis_absdiff.drop_image", "perception"]
    assert perception["auroc"] == 1.0 and perception["ci_low"] == 1.0 and perception["ci_high"] == 1.0
    reasoning = auroc["entropy", "reasoning"]
    assert reasoning["auroc"] == 1.0
    logp = auroc["logp", "perception"]
    assert logp["ci_low"] <= logp["auroc"] <= logp["ci_high"] and 0.1 < logp["auroc"] < 0.9
    assert result["signals"] == ["entropy", "vis_absdiff.drop_image", "logp"]
    assert result["methods"] == ["uniform", "entropy_topk", "atrl"]


def test_selection_precision_and_overlap():
    frame = fake_scores(policies=("sft",))
    result = analyze(frame, [], AnalysisParams(n_bootstrap=20))
    selection = {r["method"]: r for r in result["selection"]}
    assert selection["uniform"]["selected"] == 1.0 and selection["uniform"]["boosted"] == 0.0
    atrl = selection["atrl"]
    assert atrl["selected"] == pytest.approx(2 / 7) and atrl["precision_perception"] == 1.0 and atrl["positive"] == 1.0
    precision = {(r["signal"], r["method"], r["role"]): r for r in result["precision"]}
    at_atrl = precision["vis_absdiff.drop_image", "atrl", "perception"]
    assert at_atrl["ratio"] == pytest.approx(2 / 7) and at_atrl["precision"] == 1.0 and at_atrl["base_rate"] == pytest.approx(2 / 7)
    (overlap,) = result["jaccard"]
    assert overlap["methods"] == ["uniform", "entropy_topk", "atrl"]
    matrix = np.array(overlap["matrix"])
    assert np.allclose(np.diag(matrix), 1.0) and matrix[1, 2] < 0.1  # entropy picks reasoning, atrl perception
    assert matrix[0, 2] == pytest.approx(2 / 7)


def test_families_shift_and_accuracy():
    frame = fake_scores(families=("count_color", "exists"))
    evals = [
        {"policy": "sft", "split": "test", "greedy_accuracy": 0.5, "greedy_accuracy_no_image": 0.25},
        {"policy": "grpo-uniform-s0", "split": "test", "greedy_accuracy": 0.75, "greedy_accuracy_no_image": None},
    ]
    result = analyze(frame, evals, AnalysisParams(n_bootstrap=20))
    assert {r["family"] for r in result["auroc"]} == {"all", "count_color", "exists"}
    assert {r["family"] for r in result["precision"]} == {"all", "count_color", "exists"}
    assert {r["policy"] for r in result["precision"]} == {"sft"}  # the reference, which the report shows
    assert {r["policy"] for r in result["selection"]} == {"sft", "grpo-uniform-s0"}
    shift = {(r["policy"], r["signal"]): r for r in result["shift"]}
    # the trained policy's entropy on reasoning tokens (2 of 7) is 1.5 instead of 1.0, plus noise
    trained, sft = shift["grpo-uniform-s0", "entropy"], shift["sft", "entropy"]
    assert trained["mean_reasoning"] - sft["mean_reasoning"] == pytest.approx(0.5, abs=0.1)
    assert trained["mean_delta"] == pytest.approx(trained["mean"] - sft["mean"]) and trained["mean_delta"] > 0
    assert shift["sft", "entropy"]["mean_delta"] == 0.0
    assert shift["sft", "logp"]["concentration"] is None  # negative signal: no mass to concentrate
    accuracy = {r["policy"]: r for r in result["accuracy"]}
    assert accuracy["sft"]["image_gain"] == 0.25 and accuracy["grpo-uniform-s0"]["image_gain"] is None
    assert accuracy["sft"]["sampled_accuracy"] == 0.5
    assert result["policies"] == ["sft", "grpo-uniform-s0"]
    json.dumps(result, allow_nan=False)  # analysis.json is strict JSON


def test_load_scores_names_a_bad_file(tmp_path):
    path = tmp_path / "scores.parquet"
    fake_scores(policies=("sft",)).drop(columns=["role"]).to_parquet(path)
    with pytest.raises(ValueError, match=rf"{path}: score table lacks column\(s\) \['role'\]"):
        load_scores([path])
