"""Sampling completions from a policy, with the log-prob of every token under the distribution it
was drawn from; greedy when the temperature is 0. The rollout cache (tokencredit.rollouts) and the
SFT warm-up's evaluation sample with it.

Sampling is plain temperature sampling (no top-k / top-p), with the image placeholder tokens
suppressed: a sampled <|image_pad|> would be read as an image slot when the completion is scored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, ProcessorMixin

from tokencredit.batching import Images, encode_prompts
from tokencredit.models import vision_token_ids


def eos_token_ids(model: PreTrainedModel, processor: ProcessorMixin) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [] if configured is None else [configured])
    return ids | {processor.tokenizer.eos_token_id}


def decode(processor: ProcessorMixin, token_ids: Sequence[int]) -> str:
    """A completion's text, as graded: special tokens dropped, no clean-up of spaces."""
    return processor.tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def token_offsets(processor: ProcessorMixin, token_ids: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) of each token's characters in `decode(token_ids)`.

    From the decoded prefixes: a token ends where the text that is final after it ends. A byte
    that completes a character only with later tokens gets an empty span, the rest of the
    character goes to the token completing it; special tokens get empty spans.
    """
    text = decode(processor, token_ids)
    offsets, end = [], 0
    for i in range(1, len(token_ids) + 1):
        prefix = decode(processor, token_ids[:i])
        stable = len(prefix) if text.startswith(prefix) else len(os.path.commonprefix([prefix, text]))
        start, end = end, max(end, stable)
        offsets.append((start, end))
    return offsets


class SampledLogProbs(LogitsProcessor):
    """Records the log-prob of each generated token under the distribution it was drawn from.

    `output_scores` would keep a [rows, vocab] tensor per step (hundreds of GB for 2048 tokens of a
    150k vocabulary); this keeps one. generate runs custom processors after its own (repetition
    penalty, suppressed tokens) and before its temperature warper, so the temperature is applied
    here. The token chosen at step t is the last column of input_ids at step t + 1; the last
    step's token is read from the finished sequences.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.previous: torch.Tensor | None = None
        self.logps: list[torch.Tensor] = []

    def _take(self, tokens: torch.Tensor) -> None:
        if self.previous is not None:
            self.logps.append(self.previous.gather(-1, tokens[:, None]).squeeze(-1))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._take(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float() / self.temperature, -1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """[rows, steps] log-probs of the generated tokens."""
        self._take(sequences[:, -1])
        return torch.stack(self.logps, dim=1)


# Warpers generate would apply after SampledLogProbs besides temperature; a checkpoint that sets one
# would make the recorded log-probs wrong, so it is refused rather than silently misrecorded.
UNRECORDED_WARPERS = ("min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_h")


def generation_calls(n_prompts: int, n: int, chunk: int | None) -> list[tuple[slice, int]]:
    """(prompts, completions per prompt) of each generate() call, at most `chunk` rows each, in the
    order prompt then sample: whole prompts while n fits a call, else one prompt's n split over calls."""
    if chunk is None or n_prompts * n <= chunk:
        return [(slice(0, n_prompts), n)]
    if n <= chunk:
        per_call = chunk // n
        return [(slice(start, start + per_call), n) for start in range(0, n_prompts, per_call)]
    return [(slice(i, i + 1), min(chunk, n - done)) for i in range(n_prompts) for done in range(0, n, chunk)]


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    questions: Sequence[str],
    images: Images,
    n: int,
    temperature: float,
    max_new_tokens: int,
    generation_chunk: int | None = None,
) -> list[dict[str, Any]]:
    """`n` completions per question, greedy when temperature == 0: token ids, log-probs, text, finished.

    `images`: one per question (None: that prompt has no image), or None for text-only prompts.
    At most `generation_chunk` completions per generate() call (None: all in one).
    """
    if temperature == 0 and n != 1:
        raise ValueError(f"greedy decoding gives one completion per question, got n={n}")
    config = model.generation_config
    warpers = [name for name in UNRECORDED_WARPERS if getattr(config, name, None) not in (None, 1.0, 0.0)]
    if temperature > 0 and warpers:
        raise ValueError(f"the checkpoint's generation_config sets {warpers}; tokencredit samples with temperature alone")
    was_training = model.training
    model.eval()
    samples = []
    for prompts, per_prompt in generation_calls(len(questions), n, generation_chunk):
        part = None if images is None else list(images)[prompts]
        samples += _generate(model, processor, list(questions)[prompts], part, per_prompt, temperature, max_new_tokens)
    model.train(was_training)
    return samples


def _generate(
    model: PreTrainedModel, processor: ProcessorMixin, questions: list[str], images: Images, n: int, temperature: float, max_new_tokens: int
) -> list[dict[str, Any]]:
    """One generate() call: `n` completions of each question."""
    # Plain temperature sampling: no top-k / top-p truncation from the checkpoint's generation config.
    mode = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    recorder = SampledLogProbs(temperature or 1.0)
    inputs = encode_prompts(processor, questions, images).to(model.device)
    sequences = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n,
        pad_token_id=processor.tokenizer.pad_token_id,
        suppress_tokens=vision_token_ids(model),  # a sampled image placeholder would break the prompt's image slots
        logits_processor=LogitsProcessorList([recorder]),
        **mode,
    )
    tokens = sequences[:, inputs["input_ids"].shape[1] :]
    logps = recorder.finish(sequences)
    eos = eos_token_ids(model, processor)
    samples = []
    for ids, lp in zip(tokens.tolist(), logps.tolist()):
        ends = [t for t, token in enumerate(ids) if token in eos]
        length = ends[0] + 1 if ends else len(ids)
        samples.append({"token_ids": ids[:length], "sampling_logp": lp[:length], "text": decode(processor, ids[:length]), "finished": bool(ends)})
    return samples
