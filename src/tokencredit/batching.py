"""Chat prompts (+ images) → model inputs, for generation and for teacher-forced losses.

Layout of a loss batch, as in TRL: prompts left-padded to width P, completions right-padded to
width C, concatenated: input_ids[:, :P] is the prompt, input_ids[:, P:] the completion. So the
logits that predict the completion are logits[:, P - 1 : -1], and `completion_mask` is [B, C].
Passing `images=None` gives the same batch with the image removed from every prompt (the
counterfactual of a text-only forward), with identical completion tokens; a None entry in
`images` removes the image of that prompt only. An entry may be a list: a prompt with several
images (real benchmarks) gets one placeholder per image, each resized within the processor's pixel
limits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin

from tokencredit.dataset import prompt_messages

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt, padding)


# One entry per question: its image, its images, or None (no image); or None for all.
Images = Sequence[Image.Image | Sequence[Image.Image] | None] | None


def prompt_text(processor: ProcessorMixin, question: str, n_images: int) -> str:
    """The question rendered by the chat template, ending with the assistant turn's header."""
    messages = prompt_messages(question, n_images)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompts(processor: ProcessorMixin, questions: Sequence[str], images: Images, continuations: Sequence[str] | None = None) -> BatchFeature:
    """Left-padded prompts with their images, ready for `model.generate`; each prompt's `continuations`
    text (the assistant's, e.g. a claim probe) appended and encoded with it."""
    images = [None] * len(questions) if images is None else list(images)
    if len(images) != len(questions):
        raise ValueError(f"got {len(images)} images for {len(questions)} questions")
    continuations = [""] * len(questions) if continuations is None else continuations
    per_prompt = [[] if image is None else [image] if isinstance(image, Image.Image) else list(image) for image in images]
    texts = [prompt_text(processor, q, len(own)) + more for q, own, more in zip(questions, per_prompt, continuations, strict=True)]
    present = [image for own in per_prompt for image in own]
    kwargs = {"images": present} if present else {}
    return processor(text=texts, padding=True, padding_side="left", return_tensors="pt", **kwargs)


def completion_token_ids(processor: ProcessorMixin, completion: str | Sequence[int]) -> list[int]:
    """Token ids of one completion: text is tokenized and closed with eos; ids are used as given."""
    if isinstance(completion, str):
        tokenizer = processor.tokenizer
        return tokenizer(completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return [int(t) for t in completion]


def encode_for_loss(
    processor: ProcessorMixin,
    questions: Sequence[str],
    images: Images,
    completions: Sequence[str] | Sequence[Sequence[int]],
) -> BatchFeature:
    """Prompt + completion batch for teacher forcing.

    Returns the processor's prompt inputs (pixel_values, image_grid_thw, mm_token_type_ids, ...)
    extended over the completion, plus `labels` (completion ids, -100 on prompt and padding) and
    `completion_mask` [B, C]. A completion is text (tokenized, eos appended, as SFT wants) or a
    list of token ids (e.g. a sampled rollout, used as is).
    """
    if len(completions) != len(questions):
        raise ValueError(f"got {len(completions)} completions for {len(questions)} questions")
    batch = encode_prompts(processor, questions, images)
    ids = [completion_token_ids(processor, c) for c in completions]
    if not all(ids):
        empty = [i for i, c in enumerate(ids) if not c]
        raise ValueError(f"completions at rows {empty} have no tokens")
    width = max(len(c) for c in ids)
    pad_id = processor.tokenizer.pad_token_id
    completion_ids = torch.tensor([c + [pad_id] * (width - len(c)) for c in ids])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in ids])

    prompt_ids = batch["input_ids"]
    batch["input_ids"] = torch.cat([prompt_ids, completion_ids], dim=1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], completion_mask], dim=1)
    if "mm_token_type_ids" in batch:  # completion tokens are text
        batch["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1)
    prompt_labels = torch.full_like(prompt_ids, IGNORE_INDEX)
    batch["labels"] = torch.cat([prompt_labels, completion_ids.masked_fill(completion_mask == 0, IGNORE_INDEX)], dim=1)
    batch["completion_mask"] = completion_mask
    return batch
