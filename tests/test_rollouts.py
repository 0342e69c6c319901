"""Rollout cache: contents, cache key, reuse, regeneration, resuming from shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import tokencredit.models
import tokencredit.rollouts as rollouts
import tokencredit.sampling as sampling
from tokencredit.batching import completion_token_ids, encode_prompts
from tokencredit.dataset import load_images, load_split, row_images
from tokencredit.manifest import manifest_path, write_manifest
from tokencredit.models import load_policy, vision_token_ids
from tokencredit.params import RolloutParams
from tokencredit.rollouts import (
    StaleRolloutsError,
    cache_key,
    ensure_rollouts,
    generate_rollouts,
    load_rollouts,
    read_rollouts,
)
from tokencredit.sampling import decode, token_offsets
from tokencredit.synthetic import completion_role_spans, token_roles

PARAMS = RolloutParams(num_samples=2, max_new_tokens=6, batch_size=3)  # 8 test prompts: shards of 3, 3, 2


@pytest.fixture(scope="module")
def world(tiny_world, tmp_path_factory):
    """(data dir, a policy dir with its manifest, the model and processor)."""
    data_dir, base_dir = tiny_world
    policy = tmp_path_factory.mktemp("policy") / "sft"
    shutil.copytree(base_dir, policy)
    write_manifest(policy)
    model, processor = load_policy(policy)
    return data_dir, policy, model, processor


@pytest.fixture(scope="module")
def cached(world, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    data_dir, policy, _, _ = world
    out = tmp_path_factory.mktemp("rollouts") / "test.parquet"
    return out, ensure_rollouts(policy, data_dir, "test", PARAMS, "sampled", None, out, out.parent / "work")


def test_rollouts_hold_tokens_text_rewards_and_log_probs(world, cached):
    data_dir, policy, model, processor = world
    out, frame = cached
    assert out.read_bytes()[:4] == b"PAR1" and not (out.parent / "work").exists()
    assert list(frame.columns) == [
        "id", "sample", "family", "question", "image", "answer", "answer_type",
        "token_ids", "sampling_logp", "text", "finished", "accuracy_reward", "format_reward",
    ]  # fmt: skip
    prompts = load_split(data_dir, "test")
    assert list(frame["id"]) == [i for i in prompts["id"] for _ in range(2)] and list(frame["sample"]) == [0, 1] * 8
    eos = processor.tokenizer.eos_token_id
    for row in frame.itertuples():
        ids = list(row.token_ids)
        assert 1 <= len(ids) <= 6 and len(row.sampling_logp) == len(ids) and max(row.sampling_logp) <= 0
        assert row.finished == (ids[-1] == eos) and eos not in ids[:-1]
        assert row.text == decode(processor, ids) and row.accuracy_reward in (0.0, 1.0)
        assert not set(ids) & set(vision_token_ids(model))  # never an image slot inside a completion
    _, key = read_rollouts(out)
    assert key == cache_key(policy, data_dir / "test.parquet", PARAMS, "sampled")


def test_a_matching_cache_is_reused_without_loading_the_model(world, cached, monkeypatch):
    data_dir, policy, _, _ = world
    out, frame = cached
    monkeypatch.setattr(tokencredit.models, "load_policy", lambda *a, **k: pytest.fail("the cache should have been reused"))
    again = ensure_rollouts(policy, data_dir, "test", PARAMS, "sampled", None, out, out.parent / "work")
    pd.testing.assert_frame_equal(again, frame)


def test_a_batch_of_decodings_loads_the_policy_once_and_only_for_stale_ones(world, cached, tmp_path):
    """What one rollouts job per policy does: after a new temperature, `sampled` is regenerated and
    `greedy` kept as it is (same bytes), with the policy loaded once."""
    data_dir, policy, model, processor = world
    out = {"sampled": tmp_path / "sampled.parquet", "greedy": tmp_path / "greedy.parquet"}
    shutil.copy(cached[0], out["sampled"])
    ensure_rollouts(policy, data_dir, "test", PARAMS, "greedy", None, out["greedy"], tmp_path / "w")
    greedy_bytes = out["greedy"].read_bytes()
    loads = []

    def load():
        loads.append(1)
        return model, processor

    for params in (PARAMS, PARAMS.model_copy(update={"temperature": 2.0})):
        for decoding in ("sampled", "greedy"):
            ensure_rollouts(policy, data_dir, "test", params, decoding, None, out[decoding], tmp_path / decoding, load)
        assert len(loads) == (0 if params is PARAMS else 1)  # all current: nothing loaded
    assert read_rollouts(out["sampled"])[1]["sampling"]["temperature"] == 2.0
    assert out["greedy"].read_bytes() == greedy_bytes


def test_a_changed_key_regenerates(world, cached, tmp_path):
    data_dir, policy, _, _ = world
    out = tmp_path / "test.parquet"
    shutil.copy(cached[0], out)
    hotter = PARAMS.model_copy(update={"temperature": 2.0})
    ensure_rollouts(policy, data_dir, "test", hotter, "sampled", None, out, tmp_path / "work")
    assert read_rollouts(out)[1]["sampling"]["temperature"] == 2.0

    # New weights (a changed manifest): the cache no longer matches and scoring refuses it.
    moved = tmp_path / "sft"
    shutil.copytree(policy, moved)
    (moved / "extra.txt").write_text("new weights")
    write_manifest(moved)
    assert not rollouts.is_current(out, cache_key(moved, data_dir / "test.parquet", hotter, "sampled"))
    with pytest.raises(StaleRolloutsError, match="another version of policy"):
        load_rollouts(out, moved, data_dir / "test.parquet", "sampled")
    load_rollouts(out, policy, data_dir / "test.parquet", "sampled")  # the original policy still matches
    with pytest.raises(StaleRolloutsError, match="holds 'sampled' completions, not 'greedy' ones"):
        load_rollouts(out, policy, data_dir / "test.parquet", "greedy")


def test_an_interrupted_run_resumes_from_its_last_complete_shard(world, cached, tmp_path, monkeypatch):
    data_dir, policy, model, processor = world
    prompts = load_split(data_dir, "test")
    key = cache_key(policy, data_dir / "test.parquet", PARAMS, "sampled")
    out, work = tmp_path / "test.parquet", tmp_path / "work"
    sampled = []
    real = rollouts._shard_rows

    def flaky(model, processor, chunk, *args):
        if len(sampled) == 2:
            raise KeyboardInterrupt  # killed while sampling the third shard
        sampled.append(chunk["id"].iloc[0])
        return real(model, processor, chunk, *args)

    monkeypatch.setattr(rollouts, "_shard_rows", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_rollouts(model, processor, prompts, data_dir, PARAMS, key, out, work)
    assert sorted(p.name for p in work.iterdir()) == ["key.json", "shard-00000.parquet", "shard-00001.parquet"] and not out.exists()

    counted = []
    monkeypatch.setattr(rollouts, "_shard_rows", lambda *a: counted.append(1) or real(*a))
    resumed = generate_rollouts(model, processor, prompts, data_dir, PARAMS, key, out, work)
    assert len(counted) == 1  # only the missing shard
    pd.testing.assert_frame_equal(resumed, cached[1])  # same bytes as an uninterrupted run


def test_shards_of_another_key_are_discarded(world, cached, tmp_path):
    data_dir, policy, model, processor = world
    work = tmp_path / "work"
    work.mkdir()
    (work / "key.json").write_text(json.dumps({"digest": "stale"}))
    pd.DataFrame({"id": ["bogus"]}).to_parquet(work / "shard-00000.parquet")
    key = cache_key(policy, data_dir / "test.parquet", PARAMS, "sampled")
    frame = generate_rollouts(model, processor, load_split(data_dir, "test"), data_dir, PARAMS, key, tmp_path / "o.parquet", work)
    pd.testing.assert_frame_equal(frame, cached[1])


def test_missing_policy_and_foreign_parquet_are_named(world, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        rollouts.policy_hash(tmp_path / "nowhere")
    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(foreign)
    with pytest.raises(StaleRolloutsError, match=f"{foreign} has no cache key"):
        read_rollouts(foreign)
    assert manifest_path(world[1]).is_file()


def test_a_checkpoint_without_manifest_is_hashed_by_its_files(world, tmp_path):
    _, policy, _, _ = world
    local = tmp_path / "checkpoint"
    shutil.copytree(policy, local)
    assert not manifest_path(local).exists()
    assert rollouts.policy_hash(local) == rollouts.policy_hash(policy)
    (local / "config.json").write_text("{}")
    assert rollouts.policy_hash(local) != rollouts.policy_hash(policy)


def test_greedy_decodings_take_one_completion_and_ignore_sampling_keys(world, tmp_path):
    data_dir, policy, model, processor = world
    data_file = data_dir / "test.parquet"
    hotter = PARAMS.model_copy(update={"temperature": 2.0, "num_samples": 5, "seed": 3})
    assert cache_key(policy, data_file, PARAMS, "greedy") == cache_key(policy, data_file, hotter, "greedy")
    assert cache_key(policy, data_file, PARAMS, "sampled") != cache_key(policy, data_file, hotter, "sampled")
    assert cache_key(policy, data_file, PARAMS, "greedy")["digest"] != cache_key(policy, data_file, PARAMS, "no_image")["digest"]

    prompts = load_split(data_dir, "test")
    greedy = ensure_rollouts(policy, data_dir, "test", PARAMS, "greedy", None, tmp_path / "greedy.parquet", tmp_path / "w1")
    no_image = ensure_rollouts(policy, data_dir, "test", PARAMS, "no_image", None, tmp_path / "no_image.parquet", tmp_path / "w2")
    for frame in (greedy, no_image):
        assert list(frame["id"]) == list(prompts["id"]) and set(frame["sample"]) == {0}
    # The recorder leaves decoding alone: greedy equals transformers' own greedy generate.
    inputs = encode_prompts(processor, list(prompts["question"][:3]), load_images(prompts.head(3), data_dir))
    plain = model.generate(**inputs, max_new_tokens=6, do_sample=False, suppress_tokens=vision_token_ids(model),
                           pad_token_id=processor.tokenizer.pad_token_id)  # fmt: skip
    texts = [decode(processor, ids) for ids in plain[:, inputs["input_ids"].shape[1] :].tolist()]
    assert [t.split(processor.tokenizer.eos_token)[0] for t in texts] == list(greedy["text"][:3])


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_recorded_log_probs_are_those_of_the_sampling_distribution(world, temperature):
    """SampledLogProbs (one [rows, vocab] tensor) records what generate's per-step scores give."""
    data_dir, _, model, processor = world
    prompts = load_split(data_dir, "test").head(3)
    questions, images, n = list(prompts["question"]), load_images(prompts, data_dir), 1 if temperature == 0 else 2
    torch.manual_seed(0)
    samples = sampling.sample(model, processor, questions, images, n, temperature, 6)
    torch.manual_seed(0)
    inputs = encode_prompts(processor, questions, images)
    mode = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature else {"do_sample": False}
    out = model.generate(**inputs, max_new_tokens=6, num_return_sequences=n, suppress_tokens=vision_token_ids(model),
                         pad_token_id=processor.tokenizer.pad_token_id, output_scores=True, return_dict_in_generate=True, **mode)  # fmt: skip
    tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
    for row, s in enumerate(samples):
        assert s["token_ids"] == tokens[row, : len(s["token_ids"])].tolist()
        expected = [torch.log_softmax(out.scores[t][row].float(), -1)[token].item() for t, token in enumerate(s["token_ids"])]
        assert s["sampling_logp"] == pytest.approx(expected, abs=1e-5)


def test_a_row_with_two_images_shows_the_model_both(world):
    """A benchmark row lists several images: each gets its placeholder and its pixels (within the
    processor's pixel limits), and generation runs on the mixed batch."""
    data_dir, _, model, processor = world
    prompts = load_split(data_dir, "test").head(2)
    frame = pd.DataFrame({"images": [list(prompts["image"]), [prompts["image"].iloc[0]], []]})
    images = row_images(frame, data_dir)
    assert [None if i is None else len(i) for i in images] == [2, 1, None]
    questions = ["Compare the two.", "One.", "None."]
    inputs = encode_prompts(processor, questions, images)
    assert len(inputs["image_grid_thw"]) == 3  # every image of every prompt
    slots = (inputs["input_ids"] == model.config.image_token_id).sum(1).tolist()
    assert slots[0] == 2 * slots[1] > 0 and slots[2] == 0
    patch, max_pixels = processor.image_processor.patch_size, processor.image_processor.size["longest_edge"]
    assert all(h * w * patch * patch <= max_pixels for _, h, w in inputs["image_grid_thw"].tolist())
    samples = sampling.sample(model, processor, questions, images, 1, 0.0, 3)
    assert len(samples) == 3


def test_token_offsets_give_each_token_its_target_role(world, tiny_world):
    _, _, _, processor = world
    row = load_split(tiny_world[0], "test").iloc[0]
    ids = completion_token_ids(processor, row["target"])  # the target + eos, as a policy would sample it
    offsets = token_offsets(processor, ids)
    text = decode(processor, ids)
    assert text == row["target"] and "".join(text[s:e] for s, e in offsets) == text and offsets[-1][0] == offsets[-1][1]
    spans = json.loads(row["role_spans"])
    assert token_roles(offsets, completion_role_spans(text)) == token_roles(offsets, spans)
    assert "perception" in token_roles(offsets, spans)


@pytest.mark.parametrize("n_prompts, n, chunk, n_calls", [(5, 1, None, 1), (5, 1, 2, 3), (5, 3, 7, 3), (3, 4, 3, 6), (2, 5, 5, 2)])
def test_generation_calls_hold_every_row_in_order_and_at_most_chunk(n_prompts, n, chunk, n_calls):
    calls = sampling.generation_calls(n_prompts, n, chunk)
    rows = [p for prompts, k in calls for p in range(n_prompts)[prompts] for _ in range(k)]
    assert rows == [p for p in range(n_prompts) for _ in range(n)]  # prompt then sample, every row once
    assert len(calls) == n_calls and (chunk is None or all(len(range(n_prompts)[prompts]) * k <= chunk for prompts, k in calls))


def test_sampling_in_chunks_gives_the_same_greedy_completions(world):
    """model.generation_chunk: greedy completions are those of one generate() call, in ceil(rows / chunk) calls."""
    data_dir, _, model, processor = world
    prompts = load_split(data_dir, "test").head(5)
    questions, images = list(prompts["question"]), row_images(prompts, data_dir, processor)
    calls = []
    generate = model.generate
    model.generate = lambda *a, **kw: calls.append(kw["input_ids"].shape[0] * kw["num_return_sequences"]) or generate(*a, **kw)
    try:
        whole = sampling.sample(model, processor, questions, images, 1, 0.0, 6)
        chunked = sampling.sample(model, processor, questions, images, 1, 0.0, 6, generation_chunk=2)
        sampled = sampling.sample(model, processor, questions[:2], images[:2], 5, 1.0, 4, generation_chunk=3)
    finally:
        del model.generate
    assert calls == [5, 2, 2, 1, 3, 2, 3, 2]
    assert [s["token_ids"] for s in chunked] == [s["token_ids"] for s in whole]
    assert len(sampled) == 10 and all(s["sampling_logp"] for s in sampled)
