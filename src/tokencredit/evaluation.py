"""Generate answers with a policy and grade them: greedy accuracy, avg@k, visual dependence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image
from transformers import PreTrainedModel, ProcessorMixin

from tokencredit.batching import Images, encode_prompts
from tokencredit.dataset import load_image
from tokencredit.graders import score
from tokencredit.models import vision_token_ids
from tokencredit.params import EvalParams


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    questions: Sequence[str],
    images: Images,
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 48,
    batch_size: int = 64,
    seed: int = 0,
) -> list[list[str]]:
    """`n` completions per question (greedy when temperature == 0), decoded without special tokens."""
    if temperature == 0 and n != 1:
        raise ValueError(f"greedy decoding gives one completion per question, got n={n}")
    torch.manual_seed(seed)
    # Plain temperature sampling: no top-k / top-p truncation from the generation config.
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    if temperature == 0:
        sampling = {"do_sample": False}
    was_training = model.training
    model.eval()
    completions: list[list[str]] = []
    for start in range(0, len(questions), batch_size):
        chunk_images = images[start : start + batch_size] if images is not None else None
        inputs = encode_prompts(processor, questions[start : start + batch_size], chunk_images).to(model.device)
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=processor.tokenizer.pad_token_id,
            suppress_tokens=vision_token_ids(model),  # a sampled image placeholder would break the prompt's image slots
            **sampling,
        )
        texts = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        completions.extend(texts[i : i + n] for i in range(0, len(texts), n))
    model.train(was_training)
    return completions


def grade(completions: Sequence[str], answer: str, answer_type: str) -> list[int]:
    """1 for each completion whose extracted answer is correct, else 0."""
    return [score(c, answer, answer_type) for c in completions]


def greedy_correct(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    df: pd.DataFrame,
    images: Images,
    max_new_tokens: int,
    batch_size: int,
) -> list[int]:
    """Greedy correctness of every row of `df` (with `images`, or text-only when None)."""
    outs = generate(model, processor, list(df["question"]), images, 1, 0.0, max_new_tokens, batch_size)
    return [grade(o, a, t)[0] for o, a, t in zip(outs, df["answer"], df["answer_type"])]


def load_images(df: pd.DataFrame, data_dir: Path) -> list[Image.Image]:
    return [load_image(data_dir, rel) for rel in df["image"]]


def validation_accuracy(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    df: pd.DataFrame,
    data_dir: Path,
    max_new_tokens: int = 48,
    batch_size: int = 64,
) -> dict[str, float]:
    """Greedy accuracy on `df` with and without the image (the SFT check)."""
    with_image = greedy_correct(model, processor, df, load_images(df, data_dir), max_new_tokens, batch_size)
    no_image = greedy_correct(model, processor, df, None, max_new_tokens, batch_size)
    return {"val_accuracy": sum(with_image) / len(df), "val_accuracy_no_image": sum(no_image) / len(df)}


def evaluate_policy(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    df: pd.DataFrame,
    data_dir: Path,
    eval_params: EvalParams,
    policy: str,
    split: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Grade `policy` on `df`: the results/eval/{policy}/{split}.json record."""
    if df.empty:
        raise ValueError(f"split {split!r} has no rows to evaluate")
    p = eval_params
    questions = list(df["question"])
    images = load_images(df, data_dir)
    greedy = greedy_correct(model, processor, df, images, p.max_new_tokens, p.batch_size)
    samples = generate(model, processor, questions, images, p.k, p.temperature, p.max_new_tokens, p.batch_size, seed)
    avg_at_k = [sum(grade(s, a, t)) / p.k for s, a, t in zip(samples, df["answer"], df["answer_type"])]
    no_image = greedy_correct(model, processor, df, None, p.max_new_tokens, p.batch_size) if p.without_image else None

    per_example = [
        {
            "id": str(row_id),
            "family": str(family),
            "greedy_correct": greedy[i],
            "avg_at_k": avg_at_k[i],
            "greedy_correct_no_image": no_image[i] if no_image is not None else None,
        }
        for i, (row_id, family) in enumerate(zip(df["id"], df["family"]))
    ]
    frame = pd.DataFrame(per_example)
    per_family = {
        str(family): {
            "n": len(g),
            "greedy_accuracy": float(g["greedy_correct"].mean()),
            "avg_at_k": float(g["avg_at_k"].mean()),
        }
        for family, g in frame.groupby("family", sort=True)
    }
    return {
        "policy": policy,
        "split": split,
        "n": len(df),
        "k": p.k,
        "greedy_accuracy": float(frame["greedy_correct"].mean()),
        "avg_at_k": float(frame["avg_at_k"].mean()),
        "greedy_accuracy_no_image": float(frame["greedy_correct_no_image"].mean()) if no_image is not None else None,
        "per_family": per_family,
        "per_example": per_example,
    }
