"""Rollout cache: the completions of one policy on one split or benchmark, in one decoding, keyed
by what made them. Everything downstream reads them: `score` the sampled ones, `grade` all three.

Decodings (tokencredit.params.DECODINGS): `sampled` (rollouts.num_samples per prompt at
rollouts.temperature), `greedy` (one per prompt) and `no_image` (greedy with the image removed).

One parquet per (policy, split, decoding), one row per completion, ordered by prompt then sample:
  id, sample, family, question, image (path relative to the data dir; "" for a text-only row),
  answer, answer_type, [choices, answer_format, for benchmarks], token_ids (list[int]: the completion up to and
  including its first eos), sampling_logp (list[float]: log-prob of each token under the
  distribution it was drawn from; for greedy, the policy's own), text (decoded without special
  tokens), finished (ended with eos), accuracy_reward, format_reward.

The cache key (in the parquet's schema metadata) is the sha256 of: the policy's weights (the
content of its manifest, see tokencredit.manifest; a local checkpoint without one is hashed
file by file), the split parquet's bytes (its images are written with it), the decoding and the
params that decide it (RolloutParams.for_decoding), and the model section the policy is loaded
with (its pixel bounds decide the visual tokens). `ensure_rollouts` reuses a cache only when the
key matches and regenerates it otherwise, so one job can be handed every decoding of a split and
generate only the stale ones; `load_rollouts` refuses rollouts whose policy, data or decoding is
not the one asked for.

Completions come from tokencredit.sampling, imported only when something is generated: reading
and checking caches (grading, a job whose caches all match) needs neither torch nor transformers.
Generation is sharded: shard i holds the completions of prompts [i * batch_size, (i + 1) * batch_size),
is written atomically into a work dir beside a key.json, and is sampled with its own seed, so an
interrupted run resumes from its last complete shard and ends with the same bytes. A work dir with
another key is wiped first. Only parquet and json are written (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tokencredit.atomic import atomic_path, write_json, write_parquet
from tokencredit.dataset import load_split, row_images
from tokencredit.manifest import policy_hash
from tokencredit.params import Decoding, ModelParams, RolloutParams

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

log = logging.getLogger(__name__)

KEY_METADATA = b"tokencredit.rollouts.key"
DATA_COLUMNS = ("id", "family", "question", "image", "answer", "answer_type")


class StaleRolloutsError(ValueError):
    """Cached rollouts that no longer match the policy or data they claim to come from."""


# -- cache key ---------------------------------------------------------------------------------------


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_key(
    policy_dir: str | Path, data_file: str | Path, params: RolloutParams, decoding: Decoding, model_params: ModelParams | None = None
) -> dict[str, Any]:
    """{"policy", "data", "decoding", "sampling", "model", "digest"}: the digest is what a cache must match."""
    key = {"policy": policy_hash(policy_dir), "data": file_hash(data_file), "decoding": decoding, "sampling": params.for_decoding(decoding)}
    key["model"] = model_params.model_dump(mode="json") if model_params is not None else None
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


def load_rollouts(path: str | Path, policy_dir: str | Path, data_file: str | Path, decoding: Decoding) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cached rollouts and their key, after checking they are `decoding`'s, sampled from this policy and data file."""
    frame, key = read_rollouts(path)
    if key.get("decoding") != decoding:
        raise StaleRolloutsError(f"{path} holds {key.get('decoding')!r} completions, not {decoding!r} ones")
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


# -- generating ------------------------------------------------------------------------------------


def _shard_seed(seed: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


def _shard_rows(
    model, processor, prompts: pd.DataFrame, data_dir: Path, params: RolloutParams, decoding: Decoding, seed: int, generation_chunk: int | None
) -> pd.DataFrame:
    import torch

    from tokencredit.graders import accuracy_reward
    from tokencredit.rewards import format_reward
    from tokencredit.sampling import sample

    torch.manual_seed(seed)
    n, temperature = (params.num_samples, params.temperature) if decoding == "sampled" else (1, 0.0)
    images = None if decoding == "no_image" else row_images(prompts, data_dir, processor)
    samples = sample(model, processor, list(prompts["question"]), images, n, temperature, params.max_new_tokens, generation_chunk)
    columns = [c for c in (*DATA_COLUMNS, "choices", "answer_format") if c in prompts]
    rows = pd.DataFrame({c: np.repeat(prompts[c].to_numpy(), n) for c in columns})
    rows.insert(1, "sample", np.tile(np.arange(n), len(prompts)))
    rows = pd.concat([rows, pd.DataFrame(samples)], axis=1)
    choices = list(rows["choices"]) if "choices" in rows else None
    formats = list(rows["answer_format"]) if "answer_format" in rows else None
    rows["accuracy_reward"] = accuracy_reward(list(rows["text"]), list(rows["answer"]), list(rows["answer_type"]), choices, formats)
    rows["format_reward"] = format_reward(list(rows["text"]), formats)
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
    generation_chunk: int | None = None,
) -> pd.DataFrame:
    """Decode every prompt of `prompts` as `key` says, shard by shard (resuming in `work_dir`), then write `out`;
    at most `generation_chunk` completions per generate() call (model.generation_chunk; None: a shard's all)."""
    from tqdm.auto import tqdm

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
            seed = _shard_seed(params.seed, i)
            rows = _shard_rows(model, processor, chunk, Path(data_dir), params, key["decoding"], seed, generation_chunk)
            write_parquet(shard, rows)
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
    decoding: Decoding,
    model_params: ModelParams | None,
    out: str | Path,
    work_dir: str | Path,
    load: Callable[[], tuple[PreTrainedModel, ProcessorMixin]] | None = None,
) -> pd.DataFrame:
    """`decoding`'s completions of `policy_dir` on `split`: from `out` when its key matches, else generated anew.

    `load` gives the policy's (model, processor) when something must be generated (default: load
    it from `policy_dir`); a job that ensures several decodings passes one that loads it once.
    """
    data_dir = Path(data_dir)
    key = cache_key(policy_dir, data_dir / f"{split}.parquet", params, decoding, model_params)
    if is_current(out, key):
        log.info("reusing %s (cache key %s)", out, key["digest"][:12])
        return read_rollouts(out)[0]
    if Path(out).exists():
        log.warning("regenerating %s: its cache key does not match the policy, data, decoding and its params", out)
    if load is None:
        from tokencredit.models import load_policy

        model, processor = load_policy(policy_dir, model_params)
    else:
        model, processor = load()
    prompts = load_split(data_dir, split)
    desc = f"{decoding} {Path(policy_dir).name}/{split}"
    chunk = model_params.generation_chunk if model_params is not None else None
    return generate_rollouts(model, processor, prompts, data_dir, params, key, out, work_dir, desc, chunk)
