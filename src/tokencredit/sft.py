"""Supervised cold start: teacher-force the target completions for a fixed number of steps, leaving headroom for RL."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, ProcessorMixin

from tokencredit.batching import IGNORE_INDEX, Images, encode_for_loss
from tokencredit.claim_probes import NO, QUESTION, YES, answered_right, cut_positions, draw_probes, parse_claims, policy_answers, reasoning_part, single_token_ids
from tokencredit.dataset import load_images
from tokencredit.graders import score
from tokencredit.rewards import DEFAULT_ANSWER_FORMAT
from tokencredit.params import SFTParams
from tokencredit.sampling import sample

PROBES_PER_ROW = 4  # claim probes per validation row in the SFT check
EvalFn = Callable[[PreTrainedModel, ProcessorMixin, pd.DataFrame], dict[str, float]]
LogFn = Callable[[dict, int], None]


def batches(n_rows: int, batch_size: int, seed: int):
    """Endless row indices: a fresh seeded permutation each epoch, cut into batches."""
    generator = torch.Generator().manual_seed(seed)
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending += torch.randperm(n_rows, generator=generator).tolist()
        yield pending[:batch_size]
        pending = pending[batch_size:]


def greedy_correct(model: PreTrainedModel, processor: ProcessorMixin, frame: pd.DataFrame, images: Images, max_new_tokens: int, batch_size: int) -> list[int]:
    """Greedy correctness of every row of `frame` (with `images`, or text-only when None)."""
    texts = []
    for start in range(0, len(frame), batch_size):
        chunk_images = images[start : start + batch_size] if images is not None else None
        questions = list(frame["question"].iloc[start : start + batch_size])
        texts += [s["text"] for s in sample(model, processor, questions, chunk_images, 1, 0.0, max_new_tokens)]
    return [score(t, a, kind, (), DEFAULT_ANSWER_FORMAT) for t, a, kind in zip(texts, frame["answer"], frame["answer_type"])]


def validation_accuracy(
    model: PreTrainedModel, processor: ProcessorMixin, frame: pd.DataFrame, data_dir: Path, max_new_tokens: int = 48, batch_size: int = 64
) -> dict[str, float]:
    """Greedy accuracy on `frame` with and without the image (the SFT check); with claims, also the
    share of claim probes answered right (`val_probe_accuracy`, PROBES_PER_ROW per row, on its target)."""
    images = load_images(frame, data_dir, processor)
    with_image = greedy_correct(model, processor, frame, images, max_new_tokens, batch_size)
    no_image = greedy_correct(model, processor, frame, None, max_new_tokens, batch_size)
    record = {"val_accuracy": sum(with_image) / len(frame), "val_accuracy_no_image": sum(no_image) / len(frame)}
    if "claims" in frame:
        drawn = draw_probes(list(frame["target"]), [parse_claims(c) for c in frame["claims"]], PROBES_PER_ROW, np.random.default_rng(0))
        answer = functools.partial(policy_answers, model, processor, batch_size=batch_size)
        record["val_probe_accuracy"] = float(np.concatenate(answered_right(answer, list(frame["question"]), images, drawn)).mean())
    return record


def train_sft(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    data_dir: Path,
    sft_params: SFTParams,
    eval_fn: EvalFn | None = None,
    log_fn: LogFn | None = None,
) -> list[dict]:
    """AdamW on the cross-entropy of completion tokens; returns one record per validation check.

    Every `eval_every` steps (and at the last step) `eval_fn(model, processor, val_rows)` scores
    the first `eval_examples` validation rows (default: greedy accuracy with and without the
    image). Training runs `max_steps` steps; with `target_accuracy` set it stops at the first check
    whose `val_accuracy` reaches it instead, a step that float rounding on another machine can move
    (so the default has none: the checks only log the curve).

    `sft_params.text_only_fraction` of the training prompts (drawn at random) lose their image but keep
    their target. A model trained only with images emits garbage when the image is removed; with a
    few text-only prompts it falls back to a plausible text-prior answer, as real VLMs do, so
    image-removed counterfactuals and no-image accuracy measure visual dependence.
    """
    p = sft_params
    eval_fn = eval_fn or (lambda m, proc, df: validation_accuracy(m, proc, df, data_dir))
    val_rows = val_df.head(p.eval_examples)
    torch.manual_seed(p.seed)
    drop_image = torch.Generator().manual_seed(p.seed)
    probe_draws = np.random.default_rng([p.seed, 1])  # its own stream: without probes, SFT draws what it drew before
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.learning_rate)
    history: list[dict] = []
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for step, rows in enumerate(batches(len(train_df), p.batch_size, p.seed), start=1):
        chunk = train_df.iloc[rows]
        drop = (torch.rand(len(rows), generator=drop_image) < p.text_only_fraction).tolist()
        completions, probed = claim_probe_targets(chunk, processor.tokenizer, probe_draws, p.claim_probe_fraction)
        # A probe keeps its image: its answer cannot be known without it.
        images = [None if drop[i] and i not in probed else image for i, image in enumerate(load_images(chunk, data_dir, processor))]
        batch = encode_for_loss(processor, list(chunk["question"]), images, completions)
        answer_only(batch, probed)
        batch.pop("completion_mask")  # labels already carry -100 outside completions
        batch = batch.to(model.device)
        loss = probe_mixture_loss(model, batch, probed) if probed else model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())

        if step % p.eval_every == 0 or step == p.max_steps:
            record = {"step": step, "loss": sum(losses) / len(losses), **eval_fn(model, processor, val_rows)}
            record["elapsed_s"] = time.perf_counter() - start
            model.train()
            losses = []
            history.append(record)
            if log_fn is not None:
                log_fn(record, step)
            if p.target_accuracy is not None and record["val_accuracy"] >= p.target_accuracy:
                break
        if step == p.max_steps:
            break
    model.eval()
    return history


def claim_probe_targets(chunk: pd.DataFrame, tokenizer: Any, rng: np.random.Generator, fraction: float) -> tuple[list, list[int]]:
    """The chunk's completions with `fraction` of its rows (drawn from `rng`) turned into VAPO claim probes,
    and those rows' indices. A probe is its target cut at a random cut position (claim_probes' rule), one
    of its claims asked, and the answer token: the token ids, so that the answer is exactly one token."""
    completions: list = list(chunk["target"])
    probed = [i for i in range(len(chunk)) if rng.random() < fraction]
    for i in probed:
        target, claims = completions[i], parse_claims(chunk["claims"].iloc[i])
        cuts = cut_positions(reasoning_part(target))
        cut = int(rng.choice(cuts)) if len(cuts) else len(target) - 1
        claim, label = claims[rng.integers(len(claims))]
        prefix = tokenizer(target[: cut + 1] + QUESTION.format(claim=claim), add_special_tokens=False)["input_ids"]
        completions[i] = prefix + single_token_ids(tokenizer, [YES if label else NO])
    return completions, probed


def probe_mixture_loss(model: PreTrainedModel, batch: Any, probed: list[int]) -> torch.Tensor:
    """Mean cross-entropy of the targets' tokens plus mean cross-entropy of the probes' answers: a probe has
    one answer token against a target's dozen, and pooled per token the probes would be ~3 % of the loss."""
    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1].float()
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none")
    counted = labels[:, 1:] != IGNORE_INDEX
    is_probe = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    is_probe[probed] = True
    losses = [per_token[rows][counted[rows]].mean() for rows in (~is_probe, is_probe) if rows.any()]
    return sum(losses)


def answer_only(batch: Any, rows: list[int]) -> None:
    """Leave the loss of `rows` on their last completion token only (the probe's answer)."""
    mask = batch["completion_mask"]
    start = batch["labels"].shape[1] - mask.shape[1]
    for row in rows:
        batch["labels"][row, start : start + int(mask[row].sum()) - 1] = IGNORE_INDEX


def history_jsonl(history: list[dict]) -> str:
    """Text of training_log.jsonl: one JSON object per validation check."""
    return "".join(json.dumps(record, sort_keys=True) + "\n" for record in history)
