"""Rollout cache: the completions of one policy on one split or benchmark, in one decoding, keyed
by what made them. Everything downstream reads them: `score` the sampled ones, `grade` all three.

Decodings (tokencredit.params.DECODINGS): `sampled` (rollouts.num_samples per prompt at
rollouts.temperature), `greedy` (one per prompt) and `no_image` (greedy with the image removed).

One parquet per (policy, split, decoding), one row per completion, ordered by prompt then sample:
  id, sample, family, question, image (path relative to the data dir; "" for a text-only row),
  answer, answer_type, [choices, for benchmarks], token_ids (list[int]: the completion up to and
  including its first eos), sampling_logp (list[float]: log-prob of each token under the
  distribution it was drawn from; for greedy, the policy's own), text (decoded without special
  tokens), finished (ended with eos), accuracy_reward, format_reward.

The cache key (in the parquet's schema metadata) is the sha256 of: the policy's weights (the
content of its manifest, see tokencredit.manifest; a local checkpoint without one is hashed
file by file), the split parquet's bytes (its images are written with it), the decoding and the
params that decide it (RolloutParams.for_decoding). `ensure_rollouts` reuses a cache only when
the key matches and regenerates it otherwise; `load_rollouts` refuses rollouts whose policy, data
or decoding is not the one asked for.

Sampling is plain temperature sampling (no top-k / top-p), with the image placeholder tokens
suppressed: a sampled <|image_pad|> would be read as an image slot when the completion is scored.
Generation is sharded: shard i holds the completions of prompts [i * batch_size, (i + 1) * batch_size),
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
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, ProcessorMixin

from tokencredit.atomic import atomic_path, write_json, write_parquet
from tokencredit.batching import Images, encode_prompts
from tokencredit.dataset import load_split, row_images
from tokencredit.graders import accuracy_reward
from tokencredit.manifest import policy_hash
from tokencredit.models import load_policy, vision_token_ids
from tokencredit.params import Decoding, ModelParams, RolloutParams
from tokencredit.rewards import format_reward

log = logging.getLogger(__name__)

KEY_METADATA = b"tokencredit.rollouts.key"
DATA_COLUMNS = ("id", "family", "question", "image", "answer", "answer_type")


class StaleRolloutsError(ValueError):
    """Cached rollouts that no longer match the policy or data they claim to come from."""


# -- cache key ---------------------------------------------------------------------------------------


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_key(policy_dir: str | Path, data_file: str | Path, params: RolloutParams, decoding: Decoding) -> dict[str, Any]:
    """{"policy", "data", "decoding", "sampling", "digest"}: the digest is what a cache must match."""
    key = {"policy": policy_hash(policy_dir), "data": file_hash(data_file), "decoding": decoding, "sampling": params.for_decoding(decoding)}
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


@torch.no_grad()
def sample(
    model: PreTrainedModel, processor: ProcessorMixin, questions: Sequence[str], images: Images, n: int, temperature: float, max_new_tokens: int
) -> list[dict[str, Any]]:
    """`n` completions per question, greedy when temperature == 0: token ids, log-probs, text, finished.

    `images`: one per question (None: that prompt has no image), or None for text-only prompts.
    """
    if temperature == 0 and n != 1:
        raise ValueError(f"greedy decoding gives one completion per question, got n={n}")
    config = model.generation_config
    warpers = [name for name in UNRECORDED_WARPERS if getattr(config, name, None) not in (None, 1.0, 0.0)]
    if temperature > 0 and warpers:
        raise ValueError(f"the checkpoint's generation_config sets {warpers}; tokencredit samples with temperature alone")
    # Plain temperature sampling: no top-k / top-p truncation from the checkpoint's generation config.
    mode = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    recorder = SampledLogProbs(temperature or 1.0)
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    tokens = sequences[:, inputs["input_ids"].shape[1] :]
    logps = recorder.finish(sequences)
    eos = eos_token_ids(model, processor)
    samples = []
    for ids, lp in zip(tokens.tolist(), logps.tolist()):
        ends = [t for t, token in enumerate(ids) if token in eos]
        length = ends[0] + 1 if ends else len(ids)
        samples.append({"token_ids": ids[:length], "sampling_logp": lp[:length], "text": decode(processor, ids[:length]), "finished": bool(ends)})
    return samples


def _shard_rows(model, processor, prompts: pd.DataFrame, data_dir: Path, params: RolloutParams, decoding: Decoding, seed: int) -> pd.DataFrame:
    torch.manual_seed(seed)
    n, temperature = (params.num_samples, params.temperature) if decoding == "sampled" else (1, 0.0)
    images = None if decoding == "no_image" else row_images(prompts, data_dir)
    samples = sample(model, processor, list(prompts["question"]), images, n, temperature, params.max_new_tokens)
    columns = [c for c in (*DATA_COLUMNS, "choices") if c in prompts]
    rows = pd.DataFrame({c: np.repeat(prompts[c].to_numpy(), n) for c in columns})
    rows.insert(1, "sample", np.tile(np.arange(n), len(prompts)))
    rows = pd.concat([rows, pd.DataFrame(samples)], axis=1)
    choices = list(rows["choices"]) if "choices" in rows else None
    rows["accuracy_reward"] = accuracy_reward(list(rows["text"]), list(rows["answer"]), list(rows["answer_type"]), choices)
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
    """Decode every prompt of `prompts` as `key` says, shard by shard (resuming in `work_dir`), then write `out`."""
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
            rows = _shard_rows(model, processor, chunk, Path(data_dir), params, key["decoding"], _shard_seed(params.seed, i))
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
) -> pd.DataFrame:
    """`decoding`'s completions of `policy_dir` on `split`: from `out` when its key matches, else generated anew."""
    data_dir = Path(data_dir)
    key = cache_key(policy_dir, data_dir / f"{split}.parquet", params, decoding)
    if is_current(out, key):
        log.info("reusing %s (cache key %s)", out, key["digest"][:12])
        return read_rollouts(out)[0]
    if Path(out).exists():
        log.warning("regenerating %s: its cache key does not match the policy, data, decoding and its params", out)
    model, processor = load_policy(policy_dir, model_params)
    prompts = load_split(data_dir, split)
    return generate_rollouts(model, processor, prompts, data_dir, params, key, out, work_dir, desc=f"{decoding} {Path(policy_dir).name}/{split}")
