"""What vLLM gets (train.use_vllm): SamplingParams fields only, the vision tokens blocked, its context,
and images its processor leaves as training made them. vLLM itself is not installed here (it would
replace the CPU torch): the settings are checked against its published SamplingParams."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tokencredit.algorithms import get_algorithm
from tokencredit.batching import encode_prompts
from tokencredit.dataset import fit_to_processor, load_split
from tokencredit.models import load_policy, vision_token_ids
from tokencredit.params import ModelParams, ParamsError, TrainParams, validate
from tokencredit.training import grpo_config
from tokencredit.vllm_settings import SAMPLING_PARAMS_FIELDS, check_processor_bounds


@pytest.fixture
def published_sampling_fields() -> set[str]:
    """The fields of vLLM's SamplingParams as published in vLLM v0.30.0 (a version TRL 1.16 supports:
    0.22.0-0.31.0, trl/import_utils.py), vllm/sampling_params.py, class SamplingParams(msgspec.Struct),
    private ones (_eos_token_id, _all_stop_token_ids, _bad_words_token_ids) left out."""
    return {
        "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k", "min_p",
        "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs", "prompt_logprobs",
        "prompt_logprob_token_ids", "prompt_logprob_start", "logprob_token_ids", "flat_logprobs", "detokenize",
        "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output", "output_kind",
        "stream_interval", "skip_clone", "output_text_buffer_length", "structured_outputs", "logit_bias",
        "allowed_token_ids", "extra_args", "bad_words", "skip_reading_prefix_cache", "thinking_token_budget",
        "repetition_detection", "routed_experts_prompt_start", "trace_decode_token_ids",
    }  # fmt: skip


# The fields TRL 1.16 itself passes to SamplingParams in colocate mode (trl/generation/vllm_generation.py).
TRL_FIELDS = {"n", "repetition_penalty", "temperature", "top_p", "top_k", "min_p", "max_tokens", "logprobs"}
VLLM = dict(use_vllm=True, max_prompt_length=1600, max_completion_length=2048)


def test_vllm_gets_only_sampling_params_fields_and_the_vision_tokens_stay_blocked(tiny_world, published_sampling_fields):
    model, _ = load_policy(tiny_world[1], ModelParams())
    blocked = vision_token_ids(model)
    train = TrainParams(**VLLM, vllm_sampling={"repetition_penalty": 1.05})
    config = grpo_config(train, get_algorithm("grpo"), [1.0], 0, "unused", suppress_tokens=blocked)
    assert TRL_FIELDS | set(config.generation_kwargs) <= published_sampling_fields
    assert config.generation_kwargs["logit_bias"] == {token: -100.0 for token in blocked} and len(blocked) == 4
    assert config.generation_kwargs["repetition_penalty"] == 1.05
    assert config.vllm_max_model_length == 1600 + 2048  # prompt + completion, not the model's 128K default
    transformers_path = grpo_config(TrainParams(), get_algorithm("grpo"), [1.0], 0, "unused", suppress_tokens=blocked)
    assert transformers_path.generation_kwargs == {"suppress_tokens": blocked} and "suppress_tokens" not in published_sampling_fields
    assert SAMPLING_PARAMS_FIELDS == published_sampling_fields


@pytest.mark.parametrize(
    "train, message",
    [
        ({**VLLM, "vllm_sampling": {"suppress_tokens": [1]}}, r"train\.vllm_sampling: .*'suppress_tokens' is not a field of vLLM's SamplingParams"),
        ({**VLLM, "vllm_sampling": {"temperature": 0.5}}, r"train\.vllm_sampling: .*'temperature' is set by train\.temperature"),
        ({"use_vllm": True}, r"train: .*use_vllm needs max_prompt_length"),
    ],
)
def test_a_vllm_setting_vllm_does_not_take_fails_validation(train, message):
    with pytest.raises(ParamsError, match=message):
        validate({"train": train})


def test_vllm_processor_leaves_training_images_as_they_are(tiny_world):
    """vLLM builds the processor from the policy's directory (Qwen2.5-VL-3B's: 3136 to 12845056 pixels). On
    images already resized to the params' bounds it makes training's image tokens and pixels; bounds
    that do not contain the params' are refused before training."""
    data_dir, base_dir = tiny_world
    _, training = load_policy(base_dir, ModelParams(min_pixels=28 * 28, max_pixels=56 * 84))
    _, checkpoint = load_policy(base_dir, ModelParams(min_pixels=3136, max_pixels=12845056))
    image = Image.open(data_dir / load_split(data_dir, "train")["image"].iloc[0]).convert("RGB").resize((300, 200))
    ours = encode_prompts(training, ["q"], [image])
    theirs = encode_prompts(checkpoint, ["q"], [fit_to_processor(image, training)])
    assert ours["image_grid_thw"].tolist() == theirs["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    assert not torch.equal(encode_prompts(checkpoint, ["q"], [image])["image_grid_thw"], ours["image_grid_thw"])  # the full image would not
    check_processor_bounds(base_dir, load_policy(base_dir, ModelParams())[1].image_processor)  # the saved bounds, 84 x 84
    with pytest.raises(ValueError, match=r"do not contain model.min_pixels / model.max_pixels \[784, 4704\]"):
        check_processor_bounds(base_dir, training.image_processor)
