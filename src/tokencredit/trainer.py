"""Weighted GRPO/DAPO: TRL's GRPOTrainer with per-token weights on the advantages.

One training step, top to bottom:
  TRL generates G completions per prompt and computes rewards and group advantages A_i
  → (DAPO) groups with equal rewards are dropped and more prompts generated until the batch is full
  → the rollout policy scores every completion token (no grad): the signals the method needs
  → w = weighting(signals, A) → per-token advantages A_i · w_{i,t}
  → TRL's clipped loss (GRPO/DAPO/Dr. GRPO normaliser) and the optimizer step.
For w ≥ 0, weighting the advantage equals weighting the clipped per-token loss (METHODS.md §2).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from trl import GRPOTrainer

from tokencredit.counterfactual import counterfactual_batch
from tokencredit.rollout_batch import merge_rows, mixed_groups
from tokencredit.signals import TokenSignals, check_attention_implementation, score_policy
from tokencredit.weighting import weight_stats


class WeightedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages are multiplied per token by a weighting method's w[B,T].

    Args beyond GRPOTrainer's:
        weighting: callable (TokenSignals, advantages[B]) -> w[B,T], from `build_weighting`.
        needs: signals the weighting reads (from `required_signals`).
        counterfactual: counterfactual input for `logp_cf`, or None.
        chunk_size, attention_layers: scoring settings (params.ScoringParams).
        dynamic_sampling_tries: DAPO; 0 disables dynamic sampling, n > 0 allows n generation rounds per batch.
    """

    def __init__(
        self,
        *args: Any,
        weighting,
        needs: set[str],
        counterfactual: str | None,
        chunk_size: int,
        attention_layers: list[int],
        dynamic_sampling_tries: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weighting = weighting
        self.needs = set(needs)
        self.counterfactual = counterfactual if self.needs & {"logp_cf", "vis_k3", "vis_kl", "vis_absdiff"} else None
        self.chunk_size = chunk_size
        self.attention_layers = attention_layers
        self.dynamic_sampling_tries = dynamic_sampling_tries
        if "attn_image" in self.needs:
            check_attention_implementation(self.model)
        # Separate streams: extra DAPO prompts and counterfactual noise do not perturb each other.
        self._extra_prompts = torch.Generator().manual_seed(self.args.seed)
        self._counterfactual_noise = torch.Generator().manual_seed(self.args.seed + 1)

    # -- generation: DAPO dynamic sampling --------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super()._generate_and_score_completions(inputs)
        if self.dynamic_sampling_tries and self.model.training:
            batch, inputs = self._fill_with_mixed_groups(batch, inputs)
        return self._weight_advantages(batch, inputs)

    def _draw_inputs(self, num_prompts: int) -> list[dict[str, Any]]:
        """Fresh prompts from the train set (seeded), each repeated G times like TRL's sampler does."""
        idx = torch.randint(len(self.train_dataset), (num_prompts,), generator=self._extra_prompts).tolist()
        rows = [self.train_dataset[i] for i in idx]
        return [row for row in rows for _ in range(self.num_generations)]

    def _fill_with_mixed_groups(self, batch, inputs):
        """Keep groups with mixed rewards; generate more prompts until the batch is full or tries run out.

        If tries run out, the batch is topped up with equal-reward groups, whose advantages are
        zero, so the batch keeps its size and those rows add no gradient; the shortfall is logged.
        """
        g = self.num_generations
        num_groups = len(inputs) // g
        rounds, round_inputs = [batch], [inputs]
        kept: list[tuple[int, int]] = []  # (round, group)
        dropped: list[tuple[int, int]] = []
        seen = 0
        for attempt in range(self.dynamic_sampling_tries):
            if attempt:
                round_inputs.append(self._draw_inputs(num_groups))
                rounds.append(super()._generate_and_score_completions(round_inputs[-1]))
            mixed = mixed_groups(rounds[-1]["advantages"], g).tolist()
            seen += len(mixed)
            kept += [(attempt, j) for j, ok in enumerate(mixed) if ok]
            dropped += [(attempt, j) for j, ok in enumerate(mixed) if not ok]
            if len(kept) >= num_groups:
                break
        chosen = (kept + dropped)[:num_groups]
        rows = [[] for _ in rounds]
        flat_inputs = []
        for r, j in sorted(chosen):
            rows[r] += list(range(j * g, (j + 1) * g))
            flat_inputs += round_inputs[r][j * g : (j + 1) * g]
        self._metrics["train"]["dynamic_sampling/rounds"].append(len(rounds))
        self._metrics["train"]["dynamic_sampling/dropped_frac"].append(len(dropped) / seen)
        self._metrics["train"]["dynamic_sampling/unfilled_frac"].append(max(0, num_groups - len(kept)) / num_groups)
        return merge_rows(rounds, rows, self._tokenizer.pad_token_id), flat_inputs

    # -- token weights ----------------------------------------------------------------------------------
    def _weight_advantages(self, batch: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        signals = self._signals(batch, inputs)
        signal_time = time.perf_counter() - start
        advantages = batch["advantages"]
        w = self.weighting(signals, advantages)
        batch["advantages"] = advantages.unsqueeze(1) * w
        metrics = self._metrics["train" if self.model.training else "eval"]
        metrics["signals/time_s"].append(signal_time)
        for name, value in weight_stats(w, signals.mask).items():
            metrics[f"weights/{name}"].append(value)
        for name in sorted(self.needs):
            values = getattr(signals, name)[signals.mask]
            metrics[f"signals/{name}_mean"].append(values.mean().item() if values.numel() else 0.0)
        return batch

    def _signals(self, batch: dict[str, Any], inputs: list[dict[str, Any]]) -> TokenSignals:
        """The rollout policy's view of every completion token (no grad); nothing to compute for `uniform`."""
        mask = batch["completion_mask"].bool()
        if not self.needs:
            return TokenSignals(mask=mask)
        extra = {}
        if self.counterfactual is not None:
            extra = counterfactual_batch(self.counterfactual, batch, inputs, self.processing_class, self._counterfactual_noise)
        return score_policy(
            self.model,
            {**batch, **extra},
            needs=self.needs,
            counterfactual=self.counterfactual,
            chunk_size=self.chunk_size,
            temperature=self.temperature,
            attention_layers=self.attention_layers,
        )
