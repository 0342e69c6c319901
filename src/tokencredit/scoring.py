"""Score cached rollouts: every signal of every sampled token, and the weight each method gives it.

Output (results/scores/{policy}/{split}.parquet), long format, one row per completion token, in
rollout order:
  policy, split, id, sample, family, question, answer, accuracy_reward, format_reward (of its
  response); response (its row in the rollouts file), position (in the completion), token_id,
  token (its text; a special token by name), role (ground truth, below);
  signal.{s} for s in entropy, logp, attn_image, hidden_sim, hidden_sim_last, entropy_top_p;
  signal.{s}.{counterfactual} for s in logp_cf, vis_k3, vis_kl, vis_absdiff, vis_jsd, entropy_cf,
  per counterfactual input scored: those the methods use plus `score.counterfactuals`;
  weight.{method} for every entry of the params' `methods`.
Values are float32. attn_image is recomputed from the chosen layers' q and k, so every attention
kernel scores it.

Signals come from `signals.score_policy` at the rollouts' sampling temperature: one call per
counterfactual input, i.e. one counterfactual forward per kind. Weights see the batches training
sees: `score.weighting_prompts` prompts with all their samples (each prompt's samples one group),
and GRPO group advantages of the accuracy reward (Clip-Cov reads them). Methods that follow the
training progress show their weights at the end of training (progress 1: PEPO's full weights).

Roles: the sampled text is labelled by the rule that labels the synthetic targets
(`synthetic.completion_role_spans`); each token takes the role of its characters
(`synthetic.token_roles`), so special tokens and unlabelled text are "format".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from tokencredit.atomic import write_parquet
from tokencredit.batching import encode_for_loss
from tokencredit.counterfactual import COUNTERFACTUALS, counterfactual_batch
from tokencredit.dataset import load_image, prompt_messages
from tokencredit.families import family_of
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, ScoreParams, ScoringParams
from tokencredit.rollouts import load_rollouts
from tokencredit.sampling import decode, token_offsets
from tokencredit.score_columns import signal_column, weight_column
from tokencredit.signals import COUNTERFACTUAL_SIGNALS, LABEL_SIGNALS, TokenSignals, score_policy
from tokencredit.synthetic import ROLES, completion_role_spans, token_roles
from tokencredit.weighting import Context, Layout, WeightFn, build_weighting, default_counterfactual, required_signals

POLICY_SIGNALS = ("entropy", "logp", "attn_image", "hidden_sim", "hidden_sim_last", "entropy_top_p")  # from the forward with the real image
CF_SIGNALS = ("logp_cf", "vis_k3", "vis_kl", "vis_absdiff", "vis_jsd", "entropy_cf")  # one set per counterfactual input


def method_counterfactual(spec: MethodSpec) -> str | None:
    """The counterfactual input a method's signals come from, as in training (None: it needs none)."""
    if not required_signals(spec.weighting) & COUNTERFACTUAL_SIGNALS:
        return None
    return spec.counterfactual or default_counterfactual(spec.weighting)


def counterfactual_kinds(methods: dict[str, MethodSpec], extra: list[str]) -> list[str]:
    wanted = {method_counterfactual(spec) for spec in methods.values()} | set(extra)
    return [kind for kind in COUNTERFACTUALS if kind in wanted]


def group_advantages(rows: pd.DataFrame) -> Tensor:
    """GRPO advantages of the accuracy reward within each prompt's samples (TRL: unbiased std)."""
    reward = rows.groupby("id", sort=False)["accuracy_reward"]
    std = reward.transform("std").fillna(0.0)
    return torch.tensor(((rows["accuracy_reward"] - reward.transform("mean")) / (std + 1e-6)).to_numpy(), dtype=torch.float32)


def _trl_batch(encoded: Any, device: torch.device) -> dict[str, Tensor]:
    """encode_for_loss's prompt + completion batch in TRL's layout, which score_policy reads."""
    width = encoded["completion_mask"].shape[1]
    batch = {
        "prompt_ids": encoded["input_ids"][:, :-width],
        "prompt_mask": encoded["attention_mask"][:, :-width],
        "completion_ids": encoded["input_ids"][:, -width:],
        "completion_mask": encoded["completion_mask"],
        "pixel_values": encoded.get("pixel_values"),
        "image_grid_thw": encoded.get("image_grid_thw"),
    }
    return {k: v.to(device) for k, v in batch.items() if v is not None}


class RolloutScorer:
    """Signals and method weights of batches of cached rollouts, with one policy."""

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        methods: dict[str, MethodSpec],
        score: ScoreParams,
        scoring: ScoringParams,
        temperature: float,
    ) -> None:
        self.model, self.processor, self.scoring, self.temperature = model, processor, scoring, temperature
        self.batch_size = score.batch_size
        self.kinds = counterfactual_kinds(methods, score.counterfactuals)
        self.policy_signals = set(POLICY_SIGNALS)
        self.methods: dict[str, tuple[WeightFn, str | None]] = {}
        self.labels: set[str] = set()  # the ground-truth label signals a method reads
        for name, spec in methods.items():
            self.labels |= required_signals(spec.weighting) & LABEL_SIGNALS
            self.methods[name] = (build_weighting(spec.weighting, **spec.hparams), method_counterfactual(spec))
        self.noise = torch.Generator().manual_seed(score.seed)  # patch blackening / noise draws

    def _signals(self, batch: dict[str, Tensor], questions: list[str], kind: str | None, needs: set[str]) -> TokenSignals:
        extra = {}
        if kind is not None:
            inputs = [{"prompt": prompt_messages(q)} for q in questions]
            layout = family_of(self.model.config).patch_layout(self.processor)
            extra = counterfactual_batch(kind, batch, inputs, self.processor, self.noise, layout)
        return score_policy(
            self.model, {**batch, **extra}, needs=needs, counterfactual=kind, chunk_size=self.scoring.chunk_size,
            temperature=self.temperature, attention_layers=self.scoring.attention_layers, batch_size=self.batch_size,
            entropy_top_p=self.scoring.entropy_top_p, renormalize_top_p=self.scoring.renormalize_top_p,
        )  # fmt: skip

    def score(self, rows: pd.DataFrame, data_dir: Path) -> dict[str, np.ndarray]:
        """Every signal and weight column of `rows` (rollouts of whole prompts), flattened over valid tokens."""
        questions = list(rows["question"])
        images = [load_image(data_dir, rel, self.processor) for rel in rows["image"]]
        encoded = encode_for_loss(self.processor, questions, images, [list(ids) for ids in rows["token_ids"]])
        batch = _trl_batch(encoded, self.model.device)
        by_kind: dict[str | None, TokenSignals] = {}
        for i, kind in enumerate(self.kinds or [None]):
            # The first call also takes the real-image signals: the real forward runs in every call anyway.
            needs = (set(CF_SIGNALS) if kind else set()) | (self.policy_signals if i == 0 else set())
            by_kind[kind] = self._signals(batch, questions, kind, needs)
        policy = by_kind[(self.kinds or [None])[0]]
        columns = {signal_column(s): policy.require(s) for s in sorted(self.policy_signals)}
        for kind in self.kinds:
            columns |= {signal_column(s, kind): by_kind[kind].require(s) for s in CF_SIGNALS}
        advantages = group_advantages(rows).to(policy.mask.device)
        targets = list(rows["target"]) if "target" in rows else None
        labels = label_signals(self.processor, batch["completion_ids"], policy.mask, self.labels, targets)
        samples = rows.groupby("id", sort=False).size()
        context = Context(layout=Layout(group=int(samples.iloc[0]) if samples.nunique() == 1 else None), progress=1.0)
        for name, (weigh, kind) in self.methods.items():
            counterfactual = {s: by_kind[kind].require(s) for s in CF_SIGNALS} if kind else {}
            own = {s: policy.require(s) for s in self.policy_signals} | labels
            columns[weight_column(name)] = weigh(TokenSignals(mask=policy.mask, **own, **counterfactual), advantages, context)
        mask = policy.mask
        return {name: values[mask].float().cpu().numpy() for name, values in columns.items()}


def completion_token_roles(processor: ProcessorMixin, ids: list[int]) -> tuple[str, list[tuple[int, int]], list[str]]:
    """A completion's text, its tokens' character offsets and their ground-truth roles (module docstring)."""
    text = decode(processor, ids)
    offsets = token_offsets(processor, ids)
    return text, offsets, token_roles(offsets, completion_role_spans(text))


def role_codes(processor: ProcessorMixin, completion_ids: Tensor, mask: Tensor) -> Tensor:
    """[B, T] index in synthetic.ROLES of each completion token's role (the `role` label signal; 0 on padding)."""
    codes = torch.zeros(mask.shape, device=mask.device)
    for row, (ids, valid) in enumerate(zip(completion_ids.tolist(), mask.sum(1).tolist())):
        roles = completion_token_roles(processor, ids[:valid])[2]
        codes[row, :valid] = torch.tensor([float(ROLES.index(r)) for r in roles])
    return codes


def on_target_codes(processor: ProcessorMixin, completion_ids: Tensor, mask: Tensor, targets: Sequence[str]) -> Tensor:
    """[B, T] the `on_target` label signal: 1 on each completion token that ends inside the longest common
    prefix of the completion's text and its example's target, 0 from the first token that leaves it (the
    first error) on, 0 on padding. A completion that holds the whole target is on target throughout."""
    codes = torch.zeros(mask.shape, device=mask.device)
    for row, (ids, valid, target) in enumerate(zip(completion_ids.tolist(), mask.sum(1).tolist(), targets, strict=True)):
        text = decode(processor, ids[:valid])
        shared = len(os.path.commonprefix([text, target]))
        ends = torch.tensor([float(end) for _, end in token_offsets(processor, ids[:valid])])
        codes[row, :valid] = ((ends <= shared) | (shared == len(target))).float()
    return codes


def label_signals(
    processor: ProcessorMixin, completion_ids: Tensor, mask: Tensor, needs: set[str], targets: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """The ground-truth label signals among `needs` (signals.LABEL_SIGNALS); `on_target` needs each row's target text."""
    labels = {}
    if "role" in needs:
        labels["role"] = role_codes(processor, completion_ids, mask)
    if "on_target" in needs:
        if targets is None or any(not isinstance(t, str) for t in targets):
            raise ValueError("the `on_target` label signal needs every row's target text (the synthetic task's `target` column)")
        labels["on_target"] = on_target_codes(processor, completion_ids, mask, targets)
    return labels


def token_table(processor: ProcessorMixin, rollouts: pd.DataFrame) -> pd.DataFrame:
    """One row per completion token: response, position, token id, its text and its ground-truth role."""
    parts = []
    for response, ids in enumerate(rollouts["token_ids"]):
        ids = [int(t) for t in ids]
        text, offsets, roles = completion_token_roles(processor, ids)
        pieces = [text[s:e] or processor.tokenizer.convert_ids_to_tokens(t) for (s, e), t in zip(offsets, ids)]
        parts.append(
            pd.DataFrame(
                {
                    "response": response,
                    "position": np.arange(len(ids)),
                    "token_id": ids,
                    "token": pieces,
                    "role": roles,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def score_rollouts(
    scorer: RolloutScorer, processor: ProcessorMixin, rollouts: pd.DataFrame, data_dir: Path, weighting_prompts: int, desc: str = "score"
) -> pd.DataFrame:
    """The long-format score table of `rollouts` (see the module docstring, without policy and split)."""
    prompt = rollouts.groupby("id", sort=False).ngroup()
    batches = [rows for _, rows in rollouts.groupby(prompt // weighting_prompts, sort=True)]
    values: list[dict[str, np.ndarray]] = []
    for rows in tqdm(batches, desc=desc, unit="batch"):
        values.append(scorer.score(rows, data_dir))
    tokens = token_table(processor, rollouts)
    meta = ["id", "sample", "family", "question", "answer", "accuracy_reward", "format_reward"]
    response = rollouts[meta].iloc[tokens["response"]].reset_index(drop=True)
    scores = pd.DataFrame({name: np.concatenate([v[name] for v in values]) for name in values[0]})
    if len(scores) != len(tokens):
        raise RuntimeError(f"scored {len(scores)} tokens but the rollouts hold {len(tokens)}")
    return pd.concat([response, tokens, scores], axis=1)


def with_targets(rollouts: pd.DataFrame, data_path: Path) -> pd.DataFrame:
    """`rollouts` with each row's target text from its split (the `on_target` label's reference)."""
    frame = pd.read_parquet(data_path)
    if "target" not in frame:
        raise ValueError(f"{data_path} has no target column: the `on_target` label signal needs the synthetic task's targets")
    return rollouts.assign(target=rollouts["id"].map(frame.set_index("id")["target"]))


def score_file(
    policy_dir: Path,
    rollouts_path: Path,
    data_dir: Path,
    split: str,
    policy: str,
    methods: dict[str, MethodSpec],
    score: ScoreParams,
    scoring: ScoringParams,
    model_params: ModelParams | None,
    out: Path,
) -> pd.DataFrame:
    """Score the cached rollouts of `policy_dir` on `split` (checked against the policy and data) into `out`."""
    data_path = Path(data_dir) / f"{split}.parquet"
    rollouts, key = load_rollouts(rollouts_path, policy_dir, data_path, "sampled")
    model, processor = load_policy(policy_dir, model_params)
    scorer = RolloutScorer(model, processor, methods, score, scoring, temperature=key["sampling"]["temperature"])
    if "on_target" in scorer.labels:
        rollouts = with_targets(rollouts, data_path)
    table = score_rollouts(scorer, processor, rollouts, Path(data_dir), score.weighting_prompts, desc=f"score {policy}/{split}")
    table.insert(0, "policy", policy)
    table.insert(1, "split", split)
    write_parquet(out, table)
    return table
