"""What vLLM gets when it generates the rollouts (train.use_vllm), in terms it accepts.

TRL 1.16 hands `GRPOConfig.generation_kwargs` to vLLM's `SamplingParams(**kwargs)` (colocate) or to
its server, which builds one the same way: a transformers-only field such as `suppress_tokens`
fails there. So vLLM gets only fields of `SamplingParams` (checked against the field list below,
before any work), and the vision placeholders stay blocked through `logit_bias`, at vLLM's own
bound of -100 (its OpenAI front end clamps biases to [-100, 100]; a finite value also crosses the
server's JSON): after it such a token is e^-100 times less likely than before, never sampled in
practice, as with transformers' `suppress_tokens` (-inf).

The pixel bounds reach vLLM through the images themselves: training hands TRL images already
resized to the params' bounds (dataset.fit_to_processor), multiples of the patch size, which a
processor whose bounds contain the params' leaves as they are, so vLLM's processor (built from the
policy's directory, in colocate and server mode alike) makes the same image tokens as training's.
`check_processor_bounds` refuses a directory whose processor would resize them again.
Its context (max_model_len) is train.max_prompt_length + train.max_completion_length.

No torch or vLLM import here: params validation reads this on machines without either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# vLLM's SamplingParams fields, as published in vLLM v0.30.0 (vllm/sampling_params.py, class
# SamplingParams; TRL 1.16 supports vLLM 0.22.0 to 0.31.0, trl/import_utils.py), leaving out the
# private ones (_eos_token_id, _all_stop_token_ids, _bad_words_token_ids) that vLLM sets itself.
SAMPLING_PARAMS_FIELDS = frozenset(
    {
        "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k", "min_p",
        "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs", "prompt_logprobs",
        "prompt_logprob_token_ids", "prompt_logprob_start", "logprob_token_ids", "flat_logprobs", "detokenize",
        "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output", "output_kind",
        "stream_interval", "skip_clone", "output_text_buffer_length", "structured_outputs", "logit_bias",
        "allowed_token_ids", "extra_args", "bad_words", "skip_reading_prefix_cache", "thinking_token_budget",
        "repetition_detection", "routed_experts_prompt_start", "trace_decode_token_ids",
    }
)  # fmt: skip
# Decided by other params (TRL passes them itself, or this module does): not settable in train.vllm_sampling.
DECIDED_ELSEWHERE = {
    "n": "train.num_generations",
    "temperature": "train.temperature",
    "top_p": "train.top_p",
    "max_tokens": "train.max_completion_length",
    "logprobs": "TRL (the sampled tokens' log-probs)",
    "logit_bias": "the blocked vision tokens",
}
BLOCKED_BIAS = -100.0


def check_sampling_fields(settings: dict[str, Any]) -> None:
    """Raise ValueError naming the field when vLLM's SamplingParams has none such, or other params decide it."""
    unknown = sorted(set(settings) - SAMPLING_PARAMS_FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a field of vLLM's SamplingParams (vLLM 0.22-0.31; tokencredit.vllm_settings lists them)")
    decided = sorted(set(settings) & set(DECIDED_ELSEWHERE))
    if decided:
        raise ValueError(f"{decided[0]!r} is set by {DECIDED_ELSEWHERE[decided[0]]}, not here")


def sampling_kwargs(blocked_token_ids: list[int], extra: dict[str, Any]) -> dict[str, Any]:
    """`GRPOConfig.generation_kwargs` for vLLM: `extra` (train.vllm_sampling) and the blocked tokens' bias."""
    check_sampling_fields(extra)
    return {**extra, "logit_bias": {token: BLOCKED_BIAS for token in blocked_token_ids}}


def check_processor_bounds(policy_dir: str | Path, image_processor: Any) -> None:
    """vLLM builds its processor from the policy's directory: its pixel bounds must contain training's
    (model.min_pixels / model.max_pixels), so that it leaves training's resized images as they are."""
    saved = type(image_processor).from_pretrained(policy_dir, local_files_only=True).size
    ours = image_processor.size
    if not saved["shortest_edge"] <= ours["shortest_edge"] <= ours["longest_edge"] <= saved["longest_edge"]:
        raise ValueError(
            f"vLLM resizes images within the pixel bounds of {policy_dir}'s processor, "
            f"[{saved['shortest_edge']}, {saved['longest_edge']}], which do not contain model.min_pixels / model.max_pixels "
            f"[{ours['shortest_edge']}, {ours['longest_edge']}]: its images would get other image tokens than training's; "
            "set them within those bounds, or save the policy's processor with them"
        )
