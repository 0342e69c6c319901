"""Scoring cached rollouts: every signal per counterfactual, every method's weights, ground-truth roles."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from tokencredit.batching import completion_token_ids
from tokencredit.dataset import load_split
from tokencredit.manifest import write_manifest
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, Params, RolloutParams, ScoreParams, ScoringParams
from tokencredit.rollouts import StaleRolloutsError, cache_key, ensure_rollouts, write_rollouts
from tokencredit.scoring import (
    RolloutScorer,
    counterfactual_kinds,
    group_advantages,
    score_file,
    score_rollouts,
    token_table,
)

METHODS = Params().methods  # every method variant of the defaults
SCORE = ScoreParams(weighting_prompts=3, batch_size=5)


@pytest.fixture(scope="module")
def world(tiny_world, tmp_path_factory):
    """(data dir, policy dir with manifest, rollouts file) for 8 test prompts x 2 samples."""
    data_dir, base_dir = tiny_world
    root = tmp_path_factory.mktemp("scoring")
    policy = root / "sft"
    shutil.copytree(base_dir, policy)
    write_manifest(policy)
    rollouts = root / "rollouts.parquet"
    ensure_rollouts(policy, data_dir, "test", RolloutParams(num_samples=2, max_new_tokens=8, batch_size=8), "sampled", None, rollouts, root / "work")
    return data_dir, policy, rollouts


@pytest.fixture(scope="module")
def scores(world, tmp_path_factory) -> pd.DataFrame:
    data_dir, policy, rollouts = world
    out = tmp_path_factory.mktemp("scores") / "test.parquet"
    table = score_file(policy, rollouts, data_dir, "test", "sft", METHODS, SCORE, ScoringParams(), None, out)
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
    return table


def test_every_signal_and_every_method_weight(world, scores):
    rollouts = pd.read_parquet(world[2])
    assert len(scores) == sum(len(ids) for ids in rollouts["token_ids"])
    kinds = ["drop_image", "mask_visual_attention", "patch_blackening", "gray", "pixel_value_noise"]
    signals = ["signal.attn_image", "signal.entropy", "signal.entropy_top_p", "signal.hidden_sim", "signal.hidden_sim_last", "signal.logp"]
    signals += [f"signal.{s}.{k}" for k in kinds for s in ("logp_cf", "vis_k3", "vis_kl", "vis_absdiff", "vis_jsd", "entropy_cf")]
    assert [c for c in scores if c.startswith("signal.")] == signals
    assert [c for c in scores if c.startswith("weight.")] == [f"weight.{m}" for m in METHODS]
    assert set(scores["policy"]) == {"sft"} and set(scores["split"]) == {"test"}
    values = scores[signals + [f"weight.{m}" for m in METHODS]]
    assert np.isfinite(values.to_numpy()).all() and (scores.filter(like="weight.") >= 0).all().all()
    assert (scores["weight.uniform"] == 1).all()
    # the oracle weighs each token by the role the table gives it (the labels agree)
    assert ((scores["weight.oracle_reasoning"] > 0) == (scores["role"] == "reasoning")).all()
    assert set(scores["weight.oracle_first_error"]) <= {0.0, 1.0} and set(scores["weight.random_first_error"]) <= {0.0, 1.0}
    for k in kinds:  # vis_absdiff is |logp - logp_cf| of the same counterfactual
        diff = (scores["signal.logp"] - scores[f"signal.logp_cf.{k}"]).abs()
        assert np.allclose(diff, scores[f"signal.vis_absdiff.{k}"], atol=1e-5)
    assert not np.allclose(scores["signal.logp_cf.drop_image"], scores["signal.logp_cf.patch_blackening"])


def test_zoo_signals_and_weights_join_the_table_and_the_analysis(scores):
    """Issue 22: the zoo's signals are scored once and shared; the token-role analysis covers them."""
    from tokencredit.analysis import analyze
    from tokencredit.params import AnalysisParams

    assert scores.filter(like="signal.vis_jsd").to_numpy().max() <= math.log(2) + 1e-6
    assert scores[["signal.hidden_sim", "signal.hidden_sim_last"]].abs().max().max() <= 1 + 1e-5
    assert (scores["signal.entropy_top_p"] <= scores["signal.entropy"] + 1e-5).all()  # a renormalised subset of a few top tokens
    per_response = scores.groupby(["id", "sample"])
    assert np.allclose(per_response["weight.pepo"].sum(), per_response.size(), rtol=1e-4)  # progress 1: n softmax
    assert not np.allclose(scores["weight.pepo"], 1.0)
    result = analyze(scores, [], AnalysisParams(n_bootstrap=10))
    ranked = {row["signal"] for row in result["auroc"]}
    assert {"hidden_sim", "hidden_sim_last", "vis_jsd.pixel_value_noise", "entropy_cf.pixel_value_noise"} <= ranked
    assert {"vepo", "pepo", "vgpo", "cgpo", "clip_cov"} <= set(result["jaccard"][0]["methods"])


def test_weights_see_training_sized_batches(scores):
    # entropy_topk keeps ceil(0.2 N) tokens of each batch of 3 prompts (x 2 samples), not of the whole split
    prompt = scores.groupby("id", sort=False).ngroup()
    for _, batch in scores.groupby(prompt // SCORE.weighting_prompts):
        kept = (batch["weight.entropy_topk"] > 0).sum()
        assert kept == math.ceil(0.2 * len(batch) - 1e-6)
        assert batch["weight.entropy_topk"].sum() == pytest.approx(len(batch), rel=1e-5)  # mass N / kept on kept


def test_a_sampled_target_gets_the_targets_roles(world):
    data_dir, policy, _ = world
    model, processor = load_policy(policy)
    prompts = load_split(data_dir, "test").head(2)
    rollouts = prompts[["id", "family", "question", "image", "answer", "answer_type"]].assign(
        sample=0,
        token_ids=[completion_token_ids(processor, t) for t in prompts["target"]],
        accuracy_reward=[1.0, 0.0],
        format_reward=1.0,
    )
    tokens = token_table(processor, rollouts)
    first = tokens[tokens["response"] == 0]
    assert "".join(first["token"].iloc[:-1]) == prompts["target"].iloc[0] and first["token"].iloc[-1] == "<|im_end|>"
    assert set(tokens["role"]) == {"perception", "reasoning", "format"}
    assert tokens[tokens["token"].str.strip().isin(["red", "green", "blue", "yellow"])]["role"].isin(["perception", "reasoning"]).all()
    scorer = RolloutScorer(model, processor, {"uniform": METHODS["uniform"]}, SCORE, ScoringParams(), temperature=1.0)
    table = score_rollouts(scorer, processor, rollouts, data_dir, weighting_prompts=2)
    assert len(table) == len(tokens) and (table["role"] == tokens["role"]).all()
    assert (table["signal.logp"] < 0).all() and list(table.columns[:7]) == ["id", "sample", "family", "question", "answer", "accuracy_reward", "format_reward"]


def test_attn_image_and_atrl_are_scored_on_any_kernel(world):
    data_dir, policy, rollouts = world
    methods = {"atrl": METHODS["atrl"], "entropy_topk": METHODS["entropy_topk"]}
    tables = {}
    for kernel in ("sdpa", "eager"):
        model, processor = load_policy(policy, ModelParams(attn_implementation=kernel))
        scorer = RolloutScorer(model, processor, methods, SCORE, ScoringParams(), temperature=1.0)
        tables[kernel] = score_rollouts(scorer, processor, pd.read_parquet(rollouts).head(4), data_dir, weighting_prompts=2)
    assert "weight.atrl" in tables["sdpa"] and (tables["sdpa"]["signal.attn_image"] > 0).all()
    np.testing.assert_allclose(tables["sdpa"]["signal.attn_image"], tables["eager"]["signal.attn_image"], atol=1e-6)


def test_stale_rollouts_are_refused(world, tmp_path):
    data_dir, policy, rollouts = world
    frame = pd.read_parquet(rollouts)
    stale = tmp_path / "stale.parquet"
    key = cache_key(policy, data_dir / "test.parquet", RolloutParams(), "sampled")
    write_rollouts(stale, frame, {**key, "data": "0" * 64})
    with pytest.raises(StaleRolloutsError, match="another version of data"):
        score_file(policy, stale, data_dir, "test", "sft", METHODS, SCORE, ScoringParams(), None, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_counterfactual_kinds_and_group_advantages():
    assert counterfactual_kinds(METHODS, []) == ["drop_image", "mask_visual_attention", "patch_blackening", "gray", "pixel_value_noise"]
    methods = {"uniform": METHODS["uniform"], "vppo_blur": MethodSpec(weighting="vppo", counterfactual="blur")}
    assert counterfactual_kinds(methods, ["gray"]) == ["blur", "gray"]
    assert counterfactual_kinds({"atrl": METHODS["atrl"]}, []) == []
    rows = pd.DataFrame({"id": ["a", "a", "b", "b"], "accuracy_reward": [1.0, 0.0, 1.0, 1.0]})
    adv = group_advantages(rows)
    assert adv[0] == pytest.approx(1 / math.sqrt(2), rel=1e-4) and adv[1] == pytest.approx(-1 / math.sqrt(2), rel=1e-4)
    assert adv[2:].abs().max() == 0


def test_completion_role_spans_reproduce_every_familys_target_spans():
    from tokencredit.params import DataParams
    from tokencredit.synthetic import completion_role_spans, make_examples

    families = ["count_color", "count_shape", "exists", "compare", "sum_digits"]
    for example in make_examples(DataParams(families=families, n_test=50), "test"):
        assert completion_role_spans(example.target) == [tuple(span) for span in example.role_spans], example.target
    # Sampled text need not be well formed: words outside the tags get no role, a second "." neither.
    text = "x<think>red blue. red 1.</think><answer>1</answer>"
    assert [(text[s:e], r) for s, e, r in completion_role_spans(text)] == [
        ("<think>", "format"), ("red", "perception"), ("blue", "perception"), (".", "format"), ("red", "reasoning"),
        ("1", "reasoning"), ("</think>", "format"), ("<answer>", "format"), ("1", "reasoning"), ("</answer>", "format"),
    ]  # fmt: skip
