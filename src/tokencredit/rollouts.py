"""Rollout cache: sampled completions of one policy on one split, keyed by what made them.

One parquet per (policy, split), one row per sample, ordered by prompt then sample:
  id, sample, family, question, image (path relative to the data dir), answer, answer_type,
  token_ids (list[int]: the completion up to and including its first eos), sampling_logp
  (list[float]: log-prob of each token under the distribution it was sampled from), text
  (decoded without special tokens), finished (ended with eos), accuracy_reward, format_reward.

The cache key (in the parquet's schema metadata) is the sha256 of: the policy's weights (the
content of its manifest, see tokencredit.manifest), the split parquet's bytes (its images are
written with it by prepare_data), and the sampling params. `ensure_rollouts` reuses a cache only
when the key matches and regenerates it otherwise; `load_rollouts` refuses rollouts whose policy
or data changed since they were sampled.

Sampling is plain temperature sampling (no top-k / top-p), with the image placeholder tokens
suppressed: a sampled <|image_pad|> would be read as an image slot when the completion is scored.
Generation is sharded: shard i holds the samples of prompts [i * batch_size, (i + 1) * batch_size),
is written atomically into a work dir beside a key.json, and is sampled with its own seed, so an
interrupted run resumes from its last complete shard and ends with the same bytes. A work dir with
another key is wiped first. Only parquet and json are written (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from tokencredit.atomic import atomic_path, write_json, write_parquet
from tokencredit.batching import encode_prompts
from tokencredit.dataset import load_image, load_split
from tokencredit.graders import accuracy_reward
from tokencredit.manifest import manifest_path
from tokencredit.models import load_policy, vision_token_ids
from tokencredit.params import ModelParams, RolloutParams
from tokencredit.rewards import format_reward

log = logging.getLogger(__name__)

KEY_METADATA = b"tokencredit.rollouts.key"
DATA_COLUMNS = ("id", "family", "question", "image", "answer", "answer_type")


class StaleRolloutsError(ValueError):
    """Cached rollouts that no longer match the policy or data they claim to come from."""


# -- cache key ---------------------------------------------------------------------------------------


def policy_hash(policy_dir: str | Path) -> str:
    """sha256 of the policy's files (its manifest's file list), whatever the directory is called."""
    path = manifest_path(policy_dir)
    if not path.is_file():
        raise FileNotFoundError(f"policy {policy_dir} has no manifest {path}; write it with tokencredit.manifest.write_manifest")
    files = json.loads(path.read_text())["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_key(policy_dir: str | Path, data_file: str | Path, params: RolloutParams) -> dict[str, Any]:
    """{"policy", "data", "sampling", "digest"}: the digest is what a cache must match."""
    key = {"policy": policy_hash(policy_dir), "data": file_hash(data_file), "sampling": params.model_dump(mode="json")}
    key["digest"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return key


# -- reading and writing -----------------------------------------------------------------------------


def write_rollouts(path: str | Path, frame: pd.DataFrame, key: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), KEY_METADATA: json.dumps(key).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rollouts(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The cached rows and the key they were written with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rollouts file {path} does not exist")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(KEY_METADATA)
    if raw is None:
        raise StaleRolloutsError(f"{path} has no cache key: it was not written by tokencredit.rollouts")
    return table.to_pandas(), json.loads(raw)


def load_rollouts(path: str | Path, policy_dir: str | Path, data_file: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cached rollouts and their key, after checking they were sampled from this policy and data file."""
    frame, key = read_rollouts(path)
    for part, now in (("policy", policy_hash(policy_dir)), ("data", file_hash(data_file))):
        if key.get(part) != now:
            source = policy_dir if part == "policy" else data_file
            raise StaleRolloutsError(f"{path} was sampled from another version of {part} {source}; regenerate it (the `rollouts` rule)")
    return frame, key


def is_current(path: str | Path, key: dict[str, Any]) -> bool:
    try:
        return read_rollouts(path)[1].get("digest") == key["digest"]
    except (FileNotFoundError, StaleRolloutsError):
        return False


# -- sampling ----------------------------------------------------------------------------------------


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


def _shard_seed(seed: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


@torch.no_grad()
def sample(
    model: PreTrainedModel, processor: ProcessorMixin, questions: Sequence[str], images: Sequence[Image.Image], params: RolloutParams
) -> list[dict[str, Any]]:
    """`params.num_samples` completions per question: token ids, sampling log-probs, text, finished."""
    inputs = encode_prompts(processor, questions, images).to(model.device)
    out = model.generate(
        **inputs,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=params.num_samples,
        do_sample=True,
        temperature=params.temperature,
        top_k=0,  # plain temperature sampling, whatever the checkpoint's generation config says
        top_p=1.0,
        pad_token_id=processor.tokenizer.pad_token_id,
        suppress_tokens=vision_token_ids(model),
        output_scores=True,  # the processed logits each token was sampled from
        return_dict_in_generate=True,
    )
    tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
    # One step at a time: never a [rows, steps, vocab] tensor.
    logps = torch.stack(
        [torch.log_softmax(s.float(), -1).gather(-1, tokens[:, t, None]).squeeze(-1) for t, s in enumerate(out.scores)], dim=1
    )
    eos = eos_token_ids(model, processor)
    samples = []
    for ids, lp in zip(tokens.tolist(), logps.tolist()):
        ends = [t for t, token in enumerate(ids) if token in eos]
        n = ends[0] + 1 if ends else len(ids)
        samples.append({"token_ids": ids[:n], "sampling_logp": lp[:n], "text": decode(processor, ids[:n]), "finished": bool(ends)})
    return samples


def _shard_rows(model, processor, prompts: pd.DataFrame, data_dir: Path, params: RolloutParams, seed: int) -> pd.DataFrame:
    torch.manual_seed(seed)
    images = [load_image(data_dir, rel) for rel in prompts["image"]]
    samples = sample(model, processor, list(prompts["question"]), images, params)
    n = params.num_samples
    rows = pd.DataFrame({c: np.repeat(prompts[c].to_numpy(), n) for c in DATA_COLUMNS})
    rows.insert(1, "sample", np.tile(np.arange(n), len(prompts)))
    rows = pd.concat([rows, pd.DataFrame(samples)], axis=1)
    rows["accuracy_reward"] = accuracy_reward(list(rows["text"]), list(rows["answer"]), list(rows["answer_type"]))
    rows["format_reward"] = format_reward(list(rows["text"]))
    return rows


def generate_rollouts(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: pd.DataFrame,
    data_dir: str | Path,
    params: RolloutParams,
    key: dict[str, Any],
    out: str | Path,
    work_dir: str | Path,
    desc: str = "rollouts",
) -> pd.DataFrame:
    """Sample every prompt of `prompts` shard by shard (resuming in `work_dir`), then write `out`."""
    work_dir = Path(work_dir)
    key_file = work_dir / "key.json"
    if key_file.is_file() and json.loads(key_file.read_text()).get("digest") != key["digest"]:
        log.warning("discarding shards in %s: they were sampled under another cache key", work_dir)
        shutil.rmtree(work_dir)
    if not key_file.is_file():
        write_json(key_file, key)
    size = params.batch_size
    starts = range(0, len(prompts), size)
    shards = [work_dir / f"shard-{i:05d}.parquet" for i in range(len(starts))]
    done = sum(min(size, len(prompts) - start) for start, shard in zip(starts, shards) if shard.is_file())
    with tqdm(total=len(prompts), initial=done, desc=desc, unit="prompt") as bar:
        for i, (start, shard) in enumerate(zip(starts, shards)):
            if shard.is_file():
                continue
            chunk = prompts.iloc[start : start + size]
            write_parquet(shard, _shard_rows(model, processor, chunk, Path(data_dir), params, _shard_seed(params.seed, i)))
            bar.update(len(chunk))
    frame = pd.concat([pd.read_parquet(s) for s in shards], ignore_index=True)
    write_rollouts(out, frame, key)
    shutil.rmtree(work_dir)
    return frame


def ensure_rollouts(
    policy_dir: str | Path,
    data_dir: str | Path,
    split: str,
    params: RolloutParams,
    model_params: ModelParams | None,
    out: str | Path,
    work_dir: str | Path,
) -> pd.DataFrame:
    """The rollouts of `policy_dir` on `split`: from `out` when its key matches, else sampled anew."""
    data_dir = Path(data_dir)
    key = cache_key(policy_dir, data_dir / f"{split}.parquet", params)
    if is_current(out, key):
        log.info("reusing %s (cache key %s)", out, key["digest"][:12])
        return read_rollouts(out)[0]
    if Path(out).exists():
        log.warning("regenerating %s: its cache key does not match the policy, data and sampling params", out)
    model, processor = load_policy(policy_dir, model_params)
    prompts = load_split(data_dir, split)
    return generate_rollouts(model, processor, prompts, data_dir, params, key, out, work_dir, desc=f"rollouts {Path(policy_dir).name}/{split}")
