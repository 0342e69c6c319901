"""VAPO (issue 22): claim probes pinned to the released functions, synthetic claims, the probe SFT
mixture, and the policy answering probes inside the trainer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tokencredit.algorithms import get_algorithm
from tokencredit.batching import encode_for_loss
from tokencredit.claim_probes import NO, NO_WORDS, YES, YES_WORDS, draw_probes, parse_claims, perception_score, single_token_ids
from tokencredit.dataset import load_images, load_split
from tokencredit.models import load_policy
from tokencredit.params import DataParams, MethodSpec, ModelParams, ParamsError, TrainParams, validate
from tokencredit.recipe import resolve
from tokencredit.sft import answer_only, claim_probe_targets, probe_mixture_loss
from tokencredit.synthetic import COLOR_NAMES, SHAPES, corpus, make_examples, write_splits
from tokencredit.tiny_vlm import build_base
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import grpo_config, grpo_dataset, reward_functions

GOLDEN = json.loads((Path(__file__).parent / "golden" / "vapo_probes.json").read_text())
CLAIMS = [(f"claim {i}.", i % 3 == 0) for i in range(20)]  # the released code draws among 20 claims


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"k{c['k']}-seed{c['seed']}")
def test_cuts_and_claims_are_the_released_draws(case):
    responses = GOLDEN["responses"]
    drawn = draw_probes(responses, [CLAIMS] * len(responses), case["k"], np.random.default_rng(case["seed"]))
    assert [p.cuts.tolist() for p in drawn] == case["cuts"]
    for probes, response, cuts, chosen in zip(drawn, responses, case["cuts"], case["chosen"]):
        # The probe asks claim c after the response up to and including the cut; its label is claim c's own.
        assert probes.texts == [response[: cut + 1] + f"\n<anchor>claim {c}. Is this claim correct? Answer (Yes/No):" for cut, c in zip(cuts, chosen)]
        assert probes.labels == [c % 3 == 0 for c in chosen]


@pytest.mark.parametrize("case", GOLDEN["scores"], ids=lambda c: f"{len(c['correct'])}-probes")
def test_the_perception_score_is_anchor_reward(case):
    right, cuts = np.array(case["correct"], dtype=bool), np.array(case["positions"])
    assert perception_score(right, cuts, len(case["response"])) == pytest.approx(case["score"], abs=1e-12)


def count_claim_truth(claim: str, shapes) -> bool | None:
    """Re-derives a claim's truth from the scene (None: not a claim this reads)."""
    if m := re.fullmatch(r"there is (a|no) (\w+) (\w+)\.", claim):
        present = any(s.color == m[2] and s.shape == m[3] for s in shapes)
        return present == (m[1] == "a")
    if m := re.fullmatch(r"there are (\d+) (.+)\.", claim):
        what = m[2]
        count = len(shapes) if what == "shapes" else sum(s.color == what.split()[0] for s in shapes) if what.endswith(" shapes") else sum(s.shape + "s" == what for s in shapes)
        return count == int(m[1])
    return None


def test_synthetic_claims_are_true_as_labelled_half_true_and_distinct():
    params = DataParams(n_train=50, claims_per_image=20, families=["count_color", "exists"])
    for example in make_examples(params, "train"):
        texts = [c for c, _ in example.claims]
        assert len(set(texts)) == 20 and sum(label for _, label in example.claims) == 10
        assert all(count_claim_truth(c, example.shapes) == label for c, label in example.claims), example.claims
    assert {w for e in make_examples(params, "train") for c, _ in e.claims for w in re.findall(r"[a-z]+", c)} <= {
        "there", "is", "a", "no", "are", "shapes", *COLOR_NAMES, *SHAPES, *(s + "s" for s in SHAPES)
    }  # fmt: skip


def test_claims_change_nothing_else():
    plain, with_claims = (make_examples(DataParams(n_train=30, claims_per_image=n), "train") for n in (0, 20))
    assert [(e.question, e.target, e.shapes) for e in plain] == [(e.question, e.target, e.shapes) for e in with_claims]
    assert all(e.claims == [] for e in plain) and corpus(DataParams(n_train=30)) == [t for e in plain for t in (e.question, e.target)]


@pytest.fixture(scope="module")
def claims_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims_world")
    params = DataParams(n_train=16, n_validation=4, n_test=4, n_test_ood=4, claims_per_image=4)
    write_splits(params, root / "data")
    build_base(ModelParams(), corpus(params), root / "base")
    return root / "data", root / "base"


def test_sft_probes_carry_the_loss_on_their_answer_only(claims_world):
    data_dir, base_dir = claims_world
    _, processor = load_policy(base_dir, ModelParams())
    chunk = load_split(data_dir, "train").head(6)
    completions, probed = claim_probe_targets(chunk, processor.tokenizer, np.random.default_rng(0), 0.5)
    assert probed and len(probed) < len(chunk)
    batch = encode_for_loss(processor, list(chunk["question"]), load_images(chunk, data_dir, processor), completions)
    plain_labels = (batch["labels"] != -100).sum(dim=1)
    answer_only(batch, probed)
    answers = {single_token_ids(processor.tokenizer, [YES])[0]: True, single_token_ids(processor.tokenizer, [NO])[0]: False}
    for row in range(len(chunk)):
        kept = batch["labels"][row][batch["labels"][row] != -100]
        if row not in probed:
            assert len(kept) == plain_labels[row] and completions[row] == chunk["target"].iloc[row]
            continue
        text = processor.tokenizer.decode(completions[row][:-1])
        claim = re.search(r"<anchor>(.*) Is this claim correct\? Answer \(Yes/No\):$", text)[1]
        assert chunk["target"].iloc[row].startswith(text.split("\n<anchor>")[0])
        assert kept.tolist() == [completions[row][-1]] and answers[completions[row][-1]] == dict(parse_claims(chunk["claims"].iloc[row]))[claim]


def test_the_probe_mixture_loss_is_the_targets_mean_plus_the_answers_mean(claims_world):
    data_dir, base_dir = claims_world
    model, processor = load_policy(base_dir, ModelParams())
    chunk = load_split(data_dir, "train").head(6)
    completions, probed = claim_probe_targets(chunk, processor.tokenizer, np.random.default_rng(0), 0.5)
    images = load_images(chunk, data_dir, processor)

    def batch(rows):
        encoded = encode_for_loss(processor, [chunk["question"].iloc[r] for r in rows], [images[r] for r in rows], [completions[r] for r in rows])
        answer_only(encoded, [i for i, r in enumerate(rows) if r in probed])
        encoded.pop("completion_mask")
        return encoded

    targets = [r for r in range(len(chunk)) if r not in probed]
    with torch.no_grad():
        mixed = probe_mixture_loss(model, batch(range(len(chunk))), probed)
        separate = model(**batch(targets)).loss + model(**batch(probed)).loss  # the model's own per-token means
    assert mixed.item() == pytest.approx(separate.item(), rel=1e-5)


def test_the_policy_answers_probes_and_vapo_scores_correct_responses_only(claims_world, tmp_path):
    data_dir, base_dir = claims_world
    model, processor = load_policy(base_dir, ModelParams())
    rewards = build_vapo(probes=4)
    train = TrainParams(max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=12, save_steps=100)
    funcs, weights = reward_functions(train, get_algorithm("grpo"), rewards)
    frame = load_split(data_dir, "train")
    trainer = WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=grpo_config(train, get_algorithm("grpo"), weights, seed=0, output_dir=tmp_path),
        train_dataset=grpo_dataset(frame, data_dir, processor),
        reward_funcs=funcs,
        recipe=resolve("vapo", MethodSpec(reward={"name": "vapo", "hparams": {"probes": 4}})),
        chunk_size=7,
        attention_layers=[-1],
    )
    perception = funcs[2]
    assert perception.policy is trainer and weights == [0.8, 0.1, 0.1]

    # Left-padded with the last logit only, as the trainer asks, against right-padded teacher forcing.
    rows = frame.head(3)
    images = load_images(rows, data_dir, processor)
    texts = [t[:9] + "\n<anchor>there is a red circle. Is this claim correct? Answer (Yes/No):" for t in rows["target"]]
    answers = trainer.claim_answers(list(rows["question"]), [[i] for i in images], texts)
    ids = [processor.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    batch = encode_for_loss(processor, list(rows["question"]), images, ids)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "completion_mask")}).logits
    last = batch["input_ids"].shape[1] - batch["completion_mask"].shape[1] + batch["completion_mask"].sum(dim=1) - 1
    yes, no = single_token_ids(processor.tokenizer, YES_WORDS), single_token_ids(processor.tokenizer, NO_WORDS)
    candidates = torch.tensor(yes + no)
    expected = [int(candidates[logits[r, last[r], candidates].argmax()]) in yes for r in range(3)]
    assert answers == expected

    trainer._reseed_streams()
    correct = [f"<think>x. y</think><answer>{a}</answer>" for a in rows["answer"]]
    scores = perception(
        completions=[*correct, "<think>x</think><answer>wrong</answer>"],
        claims=[*rows["claims"], rows["claims"].iloc[0]],
        question=[*rows["question"], rows["question"].iloc[0]],
        images=[[i] for i in images] + [[images[0]]],
        answer=[*rows["answer"], rows["answer"].iloc[0]],
        answer_type=[*rows["answer_type"], rows["answer_type"].iloc[0]],
    )
    assert scores[3] == 0.0 and all(0.0 <= s <= 1.0 for s in scores)
    trainer.train()  # the untrained policy is rarely right: the probes' empty round runs too
    assert "rewards/vapo_perception/mean" in trainer.state.log_history[0]


def build_vapo(**hparams):
    from tokencredit.reward_sets import build_reward_set

    return build_reward_set("vapo", **hparams)


def test_vapo_is_refused_without_claims_or_probe_sft_naming_the_keys():
    base = {"train": {"methods": ["uniform", "vapo"]}}
    with pytest.raises(ParamsError, match="data.claims_per_image"):
        validate(base)
    with pytest.raises(ParamsError, match="sft.claim_probe_fraction"):
        validate({**base, "data": {"claims_per_image": 20}})
    with pytest.raises(ParamsError, match="FSDP"):
        validate({"train": {"methods": ["vapo"], "distributed": "fsdp"}, "data": {"claims_per_image": 20}, "sft": {"claim_probe_fraction": 0.2}})
    validate({**base, "data": {"claims_per_image": 20}, "sft": {"claim_probe_fraction": 0.2}})


@pytest.mark.parametrize(
    ("files", "source"),
    [(("qwen2_5_vl_7b.yaml", "vapo_qwen2_5_vl_7b.yaml"), "vapo_thinker"), (("qwen3_vl_4b.yaml", "comparison_vapo_qwen3_vl_4b.yaml"), "virl39k_claims")],
)
def test_the_gpu_settings_read_data_with_claims(tmp_path, files, source):
    from tests.test_batch_schedule import local_copies
    from tokencredit.params import merged_params
    from tokencredit.sources import check_sources

    root = Path(__file__).resolve().parents[1]
    params = validate(local_copies(merged_params(root / "params/default.yaml", *(root / "params" / f for f in files)), tmp_path))
    check_sources(params)
    assert params.data.source == source and params.train.methods == ["uniform", "vapo"]
    assert "<think>" in params.prompt.template and params.train.distributed == "deepspeed_zero3"
