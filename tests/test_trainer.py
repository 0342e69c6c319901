"""Weighted GRPO/DAPO through TRL on the tiny model: the weights reach the loss; DAPO refills batches."""

import itertools

import pandas as pd
import pytest
import torch

from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, TrainParams
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import check_role_labels, grpo_config, grpo_dataset
from tokencredit.recipe import resolve

TRAIN = TrainParams(max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=12, save_steps=100)


def make_trainer(tiny_world, tmp_path, method: str, algo: str, reward_funcs, hparams=None, train=TRAIN, reward_weights=None):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    spec = MethodSpec(weighting=method, hparams=hparams or {})
    weights = reward_weights or [1.0] * len(reward_funcs)
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=grpo_config(train, get_algorithm(algo), weights, seed=0, output_dir=tmp_path / method),
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir, processor),
        reward_funcs=reward_funcs,
        recipe=resolve(method, spec),
        chunk_size=7,
        attention_layers=[-1],
        dynamic_sampling_tries=4 if get_algorithm(algo).dynamic_sampling else 0,
        dynamic_sampling_tolerance=train.dynamic_sampling_tolerance,
        entropy_penalty=train.entropy_penalty if train.entropy_penalty_form == "sampled" else 0.0,
    )


def length_parity_reward(completion_ids, **_):
    """A reward with variance inside every group, so advantages are non-zero whatever the policy."""
    return [float(len(ids) % 2) for ids in completion_ids]


def one_step_update(tiny_world, tmp_path, method):
    seen = []

    def reward(completion_ids, **kw):
        seen.append([list(ids) for ids in completion_ids])
        return [float(i % 2) for i in range(len(completion_ids))]  # mixed in every group of 4

    trainer = make_trainer(tiny_world, tmp_path, method, "grpo", [reward])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    delta = torch.cat([(p.detach() - before[n]).flatten() for n, p in trainer.model.named_parameters()])
    return delta, seen[0], trainer


@pytest.mark.parametrize("method", ["entropy_topk", "tor", "vppo", "pgpo", "atrl", "random_tokens", "vepo", "vgpo"])
def test_method_weights_reach_the_update(tiny_world, tmp_path, method):
    uniform_delta, uniform_completions, _ = one_step_update(tiny_world, tmp_path, "uniform")
    delta, completions, trainer = one_step_update(tiny_world, tmp_path, method)
    assert completions == uniform_completions  # same rollouts: only the weights differ
    assert uniform_delta.abs().max() > 0 and delta.abs().max() > 0
    assert not torch.allclose(delta, uniform_delta, atol=1e-9)
    logged = trainer.state.log_history[0]
    assert "weights/weight_mean" in logged and torch.isfinite(torch.tensor(trainer.state.log_history[0]["loss"]))


def test_dapo_dynamic_sampling_refills_the_batch(tiny_world, tmp_path):
    toggle = itertools.cycle([0.0, 1.0])

    def reward(completions, answer, **_):
        # Prompts whose answer is "0" always get equal rewards (a group DAPO must drop); others alternate.
        return [0.0 if a == "0" else next(toggle) for a in answer]

    trainer = make_trainer(tiny_world, tmp_path, "uniform", "dapo", [reward])
    trainer.model.train()
    zeros = [row for row in trainer.train_dataset if row["answer"] == "0"][:2]
    inputs = [row for row in zeros for _ in range(trainer.num_generations)]
    batch = trainer._generate_and_score_completions(inputs)
    g = trainer.num_generations
    assert batch["completion_ids"].size(0) == len(inputs)  # the batch keeps its size
    per_group = batch["advantages"].view(-1, g, batch["advantages"].size(1))
    assert (per_group != 0).flatten(1).any(dim=1).all()  # every group now has mixed rewards
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/rounds"][-1] > 1
    assert metrics["dynamic_sampling/dropped_frac"][-1] > 0
    assert metrics["dynamic_sampling/unfilled_frac"][-1] == 0
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    assert batch["pixel_values"].size(0) == batch["image_grid_thw"].prod(-1).sum()


def test_dapo_drops_groups_of_equal_weighted_rewards(tiny_world, tmp_path):
    """0.9 accuracy + 0.1 format, all 0.9 in a group of 8: TRL's float32 group mean leaves
    advantages of about 6e-4, yet the group's rewards are all equal and DAPO must drop it."""
    calls = []

    def accuracy(completion_ids, **_):
        calls.append(1)
        first = [1.0] * 8 if len(calls) == 1 else [float(i % 2) for i in range(8)]
        return first + [float(i % 2) for i in range(len(completion_ids) - 8)]

    def no_format(completion_ids, **_):
        return [0.0] * len(completion_ids)

    train = TrainParams(max_steps=1, prompts_per_step=2, num_generations=8, max_completion_length=12, save_steps=100)
    trainer = make_trainer(tiny_world, tmp_path, "uniform", "dapo", [accuracy, no_format], train=train, reward_weights=[0.9, 0.1])
    trainer.model.train()
    rows = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer._generate_and_score_completions([row for row in rows for _ in range(8)])
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/rounds"][-1] == 2 and metrics["dynamic_sampling/dropped_frac"][-1] > 0
    assert batch["completion_ids"].size(0) == 16


def gradient(model, loss) -> torch.Tensor:
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten().clone() for p in model.parameters() if p.grad is not None])


def one_batch(trainer):
    """A generated batch of one prompt, and the policy's log π_θ(o_t) on it (with grad)."""
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which these tests skip
    batch = trainer._generate_and_score_completions([trainer.train_dataset[0]] * trainer.num_generations)
    mask = batch["completion_mask"]
    logps, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
        torch.cat([batch["prompt_mask"], mask], 1), mask.size(1),
        pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"], num_images=batch.get("num_images"),
        mm_token_type_ids=batch.get("mm_token_type_ids"),
    )  # fmt: skip
    return batch, logps


def test_vppo_entropy_penalty_is_the_sampled_token_term(tiny_world, tmp_path):
    train = TrainParams(**{**TRAIN.model_dump(), "entropy_penalty": 0.5})
    trainer = make_trainer(tiny_world, tmp_path, "uniform", "grpo", [length_parity_reward], train=train)
    batch, logps = one_batch(trainer)
    zero = torch.zeros_like(batch["advantages"])  # no policy gradient: only the penalty remains
    got = gradient(trainer.model, trainer._compute_loss(trainer.model, {**batch, "advantages": zero}))
    # VPPO: 0.5 x the mean over the sampled tokens of −log π_θ(o_t); not TRL's full-vocabulary entropy
    mask = batch["completion_mask"]
    expected = gradient(trainer.model, 0.5 * (-logps * mask).sum() / mask.sum())
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    # TRL's full-vocabulary entropy has the same value on-policy but another gradient
    full = make_trainer(tiny_world, tmp_path, "uniform", "grpo", [length_parity_reward], train=TrainParams(
        **{**train.model_dump(), "entropy_penalty_form": "full_vocabulary"}))  # fmt: skip
    full.model.train()
    full.current_gradient_accumulation_steps = 1
    other = gradient(full.model, full._compute_loss(full.model, {**batch, "advantages": zero}))
    assert other.abs().max() > 0 and not torch.allclose(other, expected, rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("algo", ["grpo", "dapo"])
def test_dual_clip_caps_negative_advantages_as_easyr1(tiny_world, tmp_path, algo):
    train = TrainParams(**{**TRAIN.model_dump(), "dual_clip": 3.0})
    trainer = make_trainer(tiny_world, tmp_path, "uniform", algo, [length_parity_reward], train=train)
    batch, logps = one_batch(trainer)
    mask = batch["completion_mask"]
    # Ratios 5 (beyond C), 2, 1.1 and 0.5 along each completion, with advantages of both signs.
    ratios = torch.tensor([5.0, 2.0, 1.1, 0.5]).repeat(mask.size(1))[: mask.size(1)].expand_as(mask)
    old = logps.detach() - ratios.log()
    advantages = torch.tensor([-1.0, 1.0, -2.0, 0.5])[:, None].expand_as(mask)
    inputs = {**batch, "old_per_token_logps": old, "advantages": advantages, "num_items_in_batch": mask.sum()}
    got = gradient(trainer.model, trainer._compute_loss(trainer.model, inputs))
    # EasyR1 core_algos.compute_policy_loss: max(−A r, −A clip(r)), then min with −A C where A < 0
    ratio = torch.exp(logps - old)
    clipped = ratio.clamp(1 - trainer.epsilon_low, 1 + trainer.epsilon_high)
    higher = torch.maximum(-advantages * ratio, -advantages * clipped)
    per_token = torch.where(advantages < 0, torch.minimum(higher, -advantages * 3.0), higher)
    loss = ((per_token * mask).sum(-1) / mask.sum(-1)).mean() if algo == "grpo" else (per_token * mask).sum() / mask.sum()
    torch.testing.assert_close(got, gradient(trainer.model, loss), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match=r"train.dual_clip \(1.2\) must exceed 1 \+ epsilon_high"):
        grpo_config(TrainParams(dual_clip=1.2), get_algorithm("dapo"), [1.0], seed=0, output_dir=tmp_path)


def test_oracle_roles_label_sampled_tokens_as_the_score_step_does(tiny_world, tmp_path):
    import pandas as pd

    from tokencredit.scoring import role_codes, token_table
    from tokencredit.synthetic import ROLES

    trainer = make_trainer(tiny_world, tmp_path, "oracle_roles", "grpo", [length_parity_reward])
    tokenizer = trainer.processing_class.tokenizer
    texts = ["<think>red blue blue. 2</think><answer>2</answer>", "<answer>3</answer>"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    completion_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids])
    mask = torch.tensor([[True] * len(row) + [False] * (width - len(row)) for row in ids])
    codes = role_codes(trainer.processing_class, completion_ids, mask)
    roles = token_table(trainer.processing_class, pd.DataFrame({"token_ids": ids}))["role"]
    assert {"perception", "reasoning", "format"} <= set(roles)
    assert codes[mask].tolist() == [float(ROLES.index(r)) for r in roles]
    trainer.train()  # the role signal reaches the weighting in a real step
    assert trainer.state.log_history[0]["weights/weight_mean"] > 0


def test_oracle_roles_on_data_without_roles_names_the_method_and_the_data(tiny_world):
    data_dir, _ = tiny_world
    frame = load_split(data_dir, "train").drop(columns=["role_spans", "target"])
    with pytest.raises(ValueError, match=r"weighting 'oracle_roles' reads the ground-truth label 'role', but the training data .*train\.parquet has none"):
        check_role_labels(resolve("x", MethodSpec(weighting="oracle_roles")), frame, data_dir)
    with pytest.raises(ValueError, match=r"'oracle_first_error' reads the ground-truth label 'on_target', .* \(no target column\)"):
        check_role_labels(resolve("x", MethodSpec(weighting="oracle_first_error")), frame, data_dir)
    check_role_labels(resolve("x", MethodSpec()), frame, data_dir)  # other methods need no labels


def test_oracle_first_error_labels_the_correct_prefix_of_each_sampled_response(tiny_world, tmp_path):
    from tokencredit.scoring import label_signals

    trainer = make_trainer(tiny_world, tmp_path, "oracle_first_error", "grpo", [length_parity_reward])
    tokenizer = trainer.processing_class.tokenizer
    target = "<think>red blue blue. blue 2</think><answer>2</answer>"
    texts = [target, "<think>red blue red. red 2</think><answer>2</answer>", "<think>red blue blue. blue 2</think><answer>2</answer>red"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    completion_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids])
    mask = torch.tensor([[True] * len(row) + [False] * (width - len(row)) for row in ids])
    on = label_signals(trainer.processing_class, completion_ids, mask, {"on_target"}, [target] * 3)["on_target"]
    assert on[0][mask[0]].all() and on[2][mask[2]].all()  # the whole target (anything after it is not an error)
    prefix = tokenizer("<think>red blue", add_special_tokens=False)["input_ids"]
    assert ids[1][: len(prefix)] == prefix and on[1].tolist() == [1.0] * len(prefix) + [0.0] * (width - len(prefix))
    with pytest.raises(ValueError, match="needs every row's target text"):
        label_signals(trainer.processing_class, completion_ids, mask, {"on_target"}, [target, None, target])
    trainer.train()  # the dataset's targets reach the label in a real step
    assert trainer.state.log_history[0]["weights/weight_mean"] > 0


def test_generation_in_chunks_gives_the_same_greedy_completions(tiny_world, tmp_path):
    """model.generation_chunk rows per generate() call: the same completions as one call (greedy), in ceil(rows / chunk) calls."""
    from trl.data_utils import prepare_multimodal_messages

    trainer = make_trainer(tiny_world, tmp_path, "uniform", "grpo", [length_parity_reward])
    inputs = trainer._draw_inputs(3)  # 3 prompts x 4 generations: 12 rows of different prompt lengths
    prompts = [prepare_multimodal_messages(row["prompt"], images=row["images"]) for row in inputs]
    prompt_ids, images, fields = trainer._tokenize_prompts(prompts)
    trainer.generation_config.do_sample = False
    calls = []
    generate = trainer.model.generate
    trainer.model.generate = lambda *a, **kw: calls.append(kw["input_ids"].shape[0]) or generate(*a, **kw)
    whole, _ = trainer._generate_single_turn(prompt_ids, images, fields, 4)
    trainer.generation_chunk = 5
    chunked, logprobs = trainer._generate_single_turn(prompt_ids, images, fields, 4)
    assert calls == [12, 5, 5, 2]
    assert chunked == whole and logprobs is None
    assert len({tuple(c) for c in whole}) > 1  # the prompts differ, so do their completions


def two_image_frame(data_dir, tmp_path):
    """Two rows of a real-dataset layout (`images`): one with two images, one with one; the images are
    larger than the processor's pixel bounds, so every path must resize them."""
    from PIL import Image

    train = load_split(data_dir, "train").head(2)
    for name, size in (("wide.png", (300, 200)), ("tall.png", (150, 260))):
        Image.open(data_dir / train["image"].iloc[0]).resize(size).save(tmp_path / name)
    return pd.DataFrame(
        {
            "question": list(train["question"]),
            "images": [[str(tmp_path / "wide.png"), str(tmp_path / "tall.png")], [str(tmp_path / "tall.png")]],
            "answer": list(train["answer"]),
            "answer_type": list(train["answer_type"]),
        }
    )


@pytest.mark.parametrize("min_pixels", [28 * 28, 84 * 84])
def test_training_images_are_decoded_lazily_and_give_the_rollout_pixel_values(tiny_world, tmp_path, min_pixels):
    """grpo_dataset stores paths; a row read decodes its images and resizes them once, as the processor
    would; through TRL's prompt tokenization they give the pixel_values of the rollout path (full
    images, resized by the processor). With min_pixels = max_pixels the processor would resize its own
    output again (84 x 56 is below 84 x 84 pixels), so the images stay whole."""
    from trl.data_utils import prepare_multimodal_messages

    from tokencredit.batching import encode_prompts
    from tokencredit.dataset import row_images

    data_dir, base_dir = tiny_world
    _, processor = load_policy(base_dir, ModelParams(min_pixels=min_pixels, max_pixels=84 * 84))
    frame = two_image_frame(data_dir, tmp_path)
    dataset = grpo_dataset(frame, data_dir, processor)
    assert dataset.column_names == ["prompt", "image_paths", "answer", "answer_type", "choices", "answer_format", "question"]  # no pixels stored
    rows = [dataset[i] for i in range(len(frame))]
    assert [len(row["images"]) for row in rows] == [2, 1] and rows[0]["images"][1] is rows[1]["images"][0]  # decoded once
    # multiples of 28 (patch 14 x merge 2) within 84 x 84 pixels, or whole
    expected = [(84, 56), (56, 84)] if min_pixels < 84 * 84 else [(300, 200), (150, 260)]
    assert [image.size for image in rows[0]["images"]] == expected
    prompts = [prepare_multimodal_messages(row["prompt"], images=row["images"]) for row in rows]
    trl = processor.apply_chat_template(conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True, padding=True)
    rollout = encode_prompts(processor, list(frame["question"]), row_images(frame, data_dir))
    assert torch.equal(torch.as_tensor(trl["image_grid_thw"]), rollout["image_grid_thw"]) and len(rollout["image_grid_thw"]) == 3
    assert torch.equal(torch.as_tensor(trl["pixel_values"]), rollout["pixel_values"])


def test_every_image_of_a_row_reaches_the_training_batch(tiny_world, tmp_path):
    trainer = make_trainer(tiny_world, tmp_path, "uniform", "grpo", [length_parity_reward])
    data_dir, _ = tiny_world
    trainer.train_dataset = grpo_dataset(two_image_frame(data_dir, tmp_path), data_dir, trainer.processing_class)
    inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(4)]  # two prompts, 4 completions each
    trainer.generation_chunk = 3  # generate() calls of rows 0-2, 3-5 (2, 1, 1 images), 6-7: each gets its own images' pixels
    pixels = []
    generate = trainer.model.generate
    trainer.model.generate = lambda *a, **kw: pixels.append(kw["pixel_values"]) or generate(*a, **kw)
    batch = trainer._generate_and_score_completions(inputs)
    assert len(pixels) == 3 and torch.equal(torch.cat(pixels), batch["pixel_values"])
    assert batch["image_grid_thw"].shape[0] == 4 * 2 + 4 * 1
    assert batch["pixel_values"].shape[0] == batch["image_grid_thw"].prod(-1).sum()
    slots = (batch["prompt_ids"] == trainer.model.config.image_token_id).sum(1)
    assert (slots[:4] == 2 * slots[4:]).all()
