"""Weighted GRPO/DAPO: TRL's GRPOTrainer running a method's recipe (tokencredit.recipe): a rollout
transform, per-token weights on the advantages and an auxiliary loss, each optional.

One training step, top to bottom:
  (transform) the generation prompts are transformed (e.g. NoisyRollout's noised images); the batch keeps the clean ones
  → TRL generates G completions per prompt and computes rewards and group advantages A_i
  → (DAPO) groups with equal rewards are dropped and more prompts generated until the batch is full
  → the rollout policy scores every completion token (no grad): the signals the method needs, and off-policy
    TRL's old-policy log-probs from the same forward (train.reuse_scoring_logps: TRL's own forward skipped)
  → w = weighting(signals, A) over the GLOBAL batch → per-token advantages A_i · w_{i,t}
  → TRL's clipped loss (GRPO/DAPO/Dr. GRPO normaliser) + the auxiliary loss, and the optimizer step.
The signals an auxiliary loss reads (e.g. PAPO's logp_cf) are scored with the weighting's, once per
generation batch, and travel with their rows into TRL's micro-batches.
The generated batch may feed several optimizer steps (train.updates_per_generation), each
accumulating gradients over micro-batches: TRL shuffles and splits the batch after this class has
weighted it, so the weights always come from the whole generated batch.
For w ≥ 0, weighting the advantage equals weighting the clipped per-token loss (METHODS.md §2).
With train.signals_from_loss, methods that read only entropy and attention skip the scoring
forward: each micro-batch's loss forward gives them (TRL computes the entropy there, hooks record
the attention) and weights that micro-batch, as TRL's top_entropy_quantile does.

Several processes (`accelerate launch`): each generates, scores and trains on its own rows, but the
weighting sees every process's rows, so its batch-wide statistics (entropy_topk's and ToR's top-ρ
thresholds) are those of the global batch, exactly as with one process; each process then keeps the
weights of its own rows. The weighting also gets the batch layout (rows per micro-batch and per
process step: VPPO's trajectory scale pools on them by default, as its authors' code does) and a
generator seeded per step, the same on every process, that breaks ties among equal scores. Prompt groups never straddle
processes (TrainParams checks it), so DAPO's per-group decisions stay local.

Every step logs the seconds spent in generation, rewards and signals (`time/*_s`); the rest of
the step is the policy update.

Non-finite numbers never reach the update: a NaN or infinite reward becomes TRL's "no reward"
(left out of its group's baseline, advantage 0), and a token with a NaN or infinite signal is
left out of the weighting (weight 0); both are counted per step (`guard/nonfinite_*`) and logged.

Resuming (`train(resume_from_checkpoint=...)`) restores the weights, optimizer, scheduler, RNG and
data position; the trainer's own random streams are reseeded from (seed, step) every step, so a
resumed run draws what an uninterrupted one would have drawn.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from accelerate.utils import is_peft_model
from torch import Tensor
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from tokencredit.claim_probes import policy_answers
from tokencredit.counterfactual import counterfactual_batch
from tokencredit.families import family_of
from tokencredit.losses import LossInputs
from tokencredit.recipe import Recipe
from tokencredit.reward_sets import PolicyReward
from tokencredit.rollout_batch import generation_rows, merge_rows, mixed_groups
from tokencredit.scoring import label_signals
from tokencredit.signals import (
    COUNTERFACTUAL_SIGNALS,
    LABEL_SIGNALS,
    TokenSignals,
    image_attention_of,
    score_policy,
)
from tokencredit.transforms import TransformContext, image_parts
from tokencredit.weighting import Context, Layout, weight_stats

log = logging.getLogger(__name__)
# What the loss forward gives besides log-probs: TRL computes the entropy there; the attention is recorded.
LOSS_FORWARD_SIGNALS = frozenset({"entropy", "attn_image"})
LOSS_SIGNAL = "loss_signal_"  # batch keys of the signals an auxiliary loss reads, e.g. loss_signal_logp_cf


class WeightedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer running a method's recipe: advantages multiplied per token by its weights w[B,T],
    its auxiliary loss added to TRL's, its rollout transform applied to the generation prompts.

    Args beyond GRPOTrainer's:
        recipe: the method's components, from `tokencredit.recipe.resolve`.
        chunk_size, attention_layers, entropy_top_p (top_p, renormalize): scoring settings (params.ScoringParams).
        dynamic_sampling_tries: DAPO; 0 disables dynamic sampling, n > 0 allows n generation rounds per batch.
        dynamic_sampling_tolerance: DAPO; a group is mixed when its rewards span more than this.
        entropy_penalty: VPPO's coefficient of mean(−log π_θ(o_t)) over the sampled tokens, added to
            the loss; 0 disables it. (TRL's own entropy_coef is the full-vocabulary form.)
        signals_from_loss: entropy and attn_image from TRL's loss forward, weights per micro-batch
            (train.signals_from_loss); only for methods that read nothing else.
        generation_chunk: rows per generate() call (model.generation_chunk); None: all of a process's rows at once.
        reuse_scoring_logps: off-policy, the scoring forward's log-probs serve as TRL's old-policy log-probs
            (train.reuse_scoring_logps); see `_trl_batch`.
    """

    def __init__(
        self,
        *args: Any,
        recipe: Recipe,
        chunk_size: int,
        attention_layers: list[int],
        entropy_top_p: tuple[float, bool] = (0.95, True),
        dynamic_sampling_tries: int = 0,
        dynamic_sampling_tolerance: float = 1e-6,
        entropy_penalty: float = 0.0,
        signals_from_loss: bool = False,
        generation_chunk: int | None = None,
        reuse_scoring_logps: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.weighting = recipe.weighting
        self.needs = set(recipe.needs)  # scored once per generation batch: the weighting's and the loss's
        self.counterfactual = recipe.counterfactual if self.needs & COUNTERFACTUAL_SIGNALS else None
        self.chunk_size = chunk_size
        self.attention_layers = attention_layers
        self.entropy_top_p = entropy_top_p
        self.dynamic_sampling_tries = dynamic_sampling_tries
        self.dynamic_sampling_tolerance = dynamic_sampling_tolerance
        self.entropy_penalty = entropy_penalty
        self.signals_from_loss = signals_from_loss and not recipe.loss_needs and bool(self.needs) and self.needs <= LOSS_FORWARD_SIGNALS
        self.generation_chunk = generation_chunk
        self.reuse_scoring_logps = reuse_scoring_logps and self._scores_every_row() and self._trl_computes_old_logps_alone()
        self._old_logps_pending = False  # TRL's old-policy forward, while it is to be skipped: see _trl_batch
        self._loss_inputs: dict[str, Any] | None = None  # the micro-batch whose loss forward runs, while it runs
        self._check_whole_groups_per_process()
        # Separate streams, so that extra DAPO prompts, counterfactual noise and tie-breaking do not
        # perturb each other; seeded every step by _reseed_streams.
        self._extra_prompts = torch.Generator()
        self._counterfactual_noise = torch.Generator()
        self._tie_breaks = torch.Generator()
        self._rollout_noise = torch.Generator()
        self._loss_noise = torch.Generator()
        self._seconds: dict[str, float] = defaultdict(float)  # per generation batch: generation, reward, signals
        self._nonfinite: dict[str, int] = defaultdict(int)  # per generation batch: guarded rewards, signal tokens
        self._rewards: Tensor | None = None  # the last round's total reward per row of the global batch
        self._last_logps: Tensor | None = None
        self.probe_rng = np.random.default_rng()  # claim probes' draws (PolicyReward), reseeded every step
        for func in self.reward_funcs:
            if isinstance(func, PolicyReward):
                func.bind(self)

    def _check_whole_groups_per_process(self) -> None:
        """TRL splits the global batch across processes in contiguous rows; DAPO judges groups locally."""
        rows = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if self.dynamic_sampling_tries and rows % self.num_generations:
            raise ValueError(
                f"DAPO dynamic sampling needs whole prompt groups on every process, but each of the "
                f"{self.accelerator.num_processes} processes holds {rows} rows for groups of {self.num_generations}: "
                "make train.prompts_per_step divisible by train.num_processes"
            )

    # -- generation: DAPO dynamic sampling --------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._seconds.clear()
        self._nonfinite.clear()
        self._reseed_streams()
        batch = self._trl_batch(inputs)
        if self.dynamic_sampling_tries and self.model.training:
            batch, inputs = self._fill_with_mixed_groups(batch, inputs)
        batch = self._weight_advantages(batch, inputs)
        metrics = self._mode_metrics()
        for part, seconds in self._seconds.items():
            metrics[f"time/{part}_s"].append(seconds)
        # Over the global batch, every DAPO round included; with signals_from_loss, signals are guarded per micro-batch.
        for what in ("rewards",) if self.signals_from_loss else ("rewards", "signals"):
            metrics[f"guard/nonfinite_{what}"].append(float(self._nonfinite[what]))
        return batch

    # -- TRL's old-policy log-probs from the scoring forward (train.reuse_scoring_logps) ----------------
    # Off-policy (updates_per_generation > 1) TRL's batch builder runs a no-grad forward of every row with
    # its image for old_per_token_logps; the scoring forward then reads the same rows with the same weights
    # and temperature, and its logp is that quantity. So TRL's forward is skipped and its result taken from
    # scoring. This leans on a private method: in trl 1.16, _generate_and_score_completions calls
    # _get_per_token_logps_and_entropies for the old policy first (grpo_trainer.py l. 2643-2657), behind
    # the gate _trl_computes_old_logps_alone repeats; pyproject.toml pins trl below 1.17 for it, and
    # _trl_batch fails loudly if TRL stops calling it.
    def _scores_every_row(self) -> bool:
        """Whether a scoring forward runs over every row of each generated batch (with signals_from_loss none runs)."""
        return bool(self.needs - LABEL_SIGNALS) and not self.signals_from_loss

    def _trl_computes_old_logps_alone(self) -> bool:
        """TRL's gate of its old-policy forward (generation out of step with the optimizer), where nothing
        else in its batch builder reads the result (vLLM's importance sampling ratio does)."""
        off_policy = self.args.gradient_accumulation_steps % (self.args.steps_per_generation * self.num_iterations) != 0
        return off_policy and not (self.use_vllm and self.vllm_importance_sampling_correction)

    def _trl_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's generated batch; with reuse_scoring_logps, without TRL's old-policy forward (its first
        _get_per_token_logps_and_entropies call): _weight_advantages sets old_per_token_logps from scoring."""
        self._old_logps_pending = self.reuse_scoring_logps
        try:
            batch = super()._generate_and_score_completions(inputs)
        finally:
            missed, self._old_logps_pending = self._old_logps_pending, False
        if missed:
            raise RuntimeError(
                "TRL's batch builder ran no old-policy forward where trl 1.16 does: train.reuse_scoring_logps needs the "
                "TRL versions pyproject.toml pins (or set it false)"
            )
        return batch

    def _generate(self, prompts: list):
        """TRL's generation, from the recipe's transformed prompts when it has a rollout transform (in
        training); the batch keeps the clean images, so rewards, signals and the update see them.
        Under the accelerator's autocast, as scoring (_whole_policy): generate() runs the vision tower
        outside the forward accelerate wraps in it, and under FSDP the root's summoned weights are fp32."""
        with self._timed("generation"), self.accelerator.autocast():
            if self.recipe.transform is None or not self.model.training:
                return super()._generate(prompts)
            context = TransformContext(self._rollout_noise, self._progress(), self.num_generations)
            out = super()._generate(self.recipe.transform(prompts, context))
            clean = [[part["image"] for part in image_parts(prompt)] or None for prompt in prompts]
            return (*out[:6], clean if any(clean) else None, *out[7:])  # TRL returns the images 7th

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's generation, generation_chunk rows per generate() call: one call would hold the KV cache of
        every row of the process at once (240 rows at 3B). vLLM schedules its own batches."""
        chunk = self.generation_chunk
        if self.use_vllm or chunk is None or len(prompt_ids) <= chunk:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        completions = []
        for start in range(0, len(prompt_ids), chunk):
            rows = slice(start, start + chunk)
            part = generation_rows(multimodal_fields, images, rows)
            own_images = images[rows] if images is not None else None
            completions += super()._generate_single_turn(prompt_ids[rows], own_images, part, num_generations, has_tool_images)[0]
        return completions, None  # transformers' generate gives TRL no sampling log-probs

    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Tensor:
        """Rewards [rows of the global batch, reward functions]; a non-finite one becomes NaN.

        Our reward functions return a number for every completion, so NaN here is a fault, not
        TRL's "function does not apply". TRL leaves NaN rewards out of the group baseline and gives an
        unscorable row advantage 0; an infinite reward would instead turn the whole group's
        advantages, and then the weights, into NaN.
        """
        with self._timed("reward"):
            rewards = super()._calculate_rewards(*args, **kwargs)
        bad = ~torch.isfinite(rewards)
        self._count_nonfinite("rewards", int(bad.sum()))
        rewards = rewards.masked_fill(bad, torch.nan)
        # The total TRL normalises (its sum_then_normalize), NaN where no function scored the row.
        total = (rewards * self.reward_weights.to(rewards.device)).nansum(dim=1)
        self._rewards = total.masked_fill(rewards.isnan().all(dim=1), torch.nan)
        return rewards

    def claim_answers(self, questions: list[str], images: list, texts: list[str]) -> list[bool]:
        """VAPO's claim probes answered by the policy (claim_probes.policy_answers), a micro-batch of rows
        per forward. Every process calls this once per reward round, with or without rows (ZeRO-3 gathers in it)."""
        with self._timed("claim_probes"), self._whole_policy() as policy:
            return policy_answers(policy, self.processing_class, questions, images, texts, self.args.per_device_train_batch_size)

    def _reseed_streams(self) -> None:
        """Seed the trainer's own streams from (seed, step): no generator state to checkpoint.

        Extra prompts are drawn for the global batch, and every process weights the same global
        batch, so every process shares those streams; noise is drawn per row, so each process has its own.
        """
        step, rank = self.state.global_step, self.accelerator.process_index
        self._extra_prompts.manual_seed(_derived_seed(self.args.seed, step, 0))
        self._counterfactual_noise.manual_seed(_derived_seed(self.args.seed, step, 1, rank))
        self._tie_breaks.manual_seed(_derived_seed(self.args.seed, step, 2))
        self._rollout_noise.manual_seed(_derived_seed(self.args.seed, step, 3, rank))
        self._loss_noise.manual_seed(_derived_seed(self.args.seed, step, 4, rank))
        self.probe_rng = np.random.default_rng(_derived_seed(self.args.seed, step, 5, rank))

    def _draw_inputs(self, num_prompts: int) -> list[dict[str, Any]]:
        """This process's share of fresh prompts for the global batch, each repeated G times like TRL's sampler."""
        rank, processes = self.accelerator.process_index, self.accelerator.num_processes
        idx = torch.randint(len(self.train_dataset), (num_prompts * processes,), generator=self._extra_prompts).tolist()
        rows = [self.train_dataset[i] for i in idx[rank * num_prompts : (rank + 1) * num_prompts]]
        return [row for row in rows for _ in range(self.num_generations)]

    def _fill_with_mixed_groups(self, batch, inputs):
        """Keep groups with mixed rewards; generate more prompts until the batch is full or tries run out.

        If tries run out, the batch is topped up with equal-reward groups, whose advantages are
        zero, so the batch keeps its size and those rows add no gradient; the shortfall is logged.
        Generation and rewards are collective operations, so every process takes part in every
        round until all processes are full.
        """
        g = self.num_generations
        num_groups = len(inputs) // g
        rounds, round_inputs = [batch], [inputs]
        kept: list[tuple[int, int]] = []  # (round, group)
        dropped: list[tuple[int, int]] = []
        for attempt in range(self.dynamic_sampling_tries):
            if attempt:
                round_inputs.append(self._draw_inputs(num_groups))
                rounds.append(self._trl_batch(round_inputs[-1]))
            mixed = mixed_groups(self._local_rewards(len(round_inputs[-1])), g, self.dynamic_sampling_tolerance).tolist()
            kept += [(attempt, j) for j, ok in enumerate(mixed) if ok]
            dropped += [(attempt, j) for j, ok in enumerate(mixed) if not ok]
            if self._on_every_process(len(kept) >= num_groups):
                break
        chosen = (kept + dropped)[:num_groups]
        rows = [[] for _ in rounds]
        flat_inputs = []
        for r, j in sorted(chosen):
            rows[r] += list(range(j * g, (j + 1) * g))
            flat_inputs += round_inputs[r][j * g : (j + 1) * g]
        n_dropped, n_seen, n_unfilled = self._sum_over_processes(
            [len(dropped), len(kept) + len(dropped), max(0, num_groups - len(kept))]
        )
        metrics = self._mode_metrics()
        metrics["dynamic_sampling/rounds"].append(len(rounds))
        metrics["dynamic_sampling/dropped_frac"].append(n_dropped / n_seen)
        metrics["dynamic_sampling/unfilled_frac"].append(n_unfilled / (num_groups * self.accelerator.num_processes))
        merged = merge_rows(rounds, rows, self._tokenizer.pad_token_id)
        # merge_rows counts this process's loss tokens; TRL's DAPO normaliser divides by the count over all processes.
        merged["num_items_in_batch"] = self.accelerator.gather(merged["num_items_in_batch"]).sum()
        return merged, flat_inputs

    # -- token weights ----------------------------------------------------------------------------------
    def _weight_advantages(self, batch: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.signals_from_loss:  # weighted micro-batch by micro-batch, in the loss forward
            return batch
        with self._timed("signals"):
            signals = self._signals(batch, inputs)
            w, guarded = self._weights(signals, batch["advantages"])
        if self.reuse_scoring_logps:  # in place of TRL's old-policy forward, which _trl_batch skipped
            batch["old_per_token_logps"] = signals.logp
        self._count_nonfinite("signals", guarded)
        batch["advantages"] = batch["advantages"].unsqueeze(1) * w
        for name in self.recipe.loss_needs:  # rows travel with TRL's shuffling into the micro-batches
            batch[LOSS_SIGNAL + name] = getattr(signals, name)
        return batch

    def _weights(self, local: TokenSignals, advantages: Tensor) -> tuple[Tensor, int]:
        """This process's rows of w, weighted over every process's rows; and how many tokens were guarded."""
        signals, all_advantages = self._global_batch(local, advantages)
        signals, guarded = finite_signals(signals)
        w = self.weighting(signals, all_advantages, Context(self._tie_breaks, self._layout(), self._progress()))
        self._log_weights(w, signals)
        return self._local_rows(w, local.mask.shape[1]), guarded

    def _progress(self) -> float:
        """Share of training done when this batch was generated: global_step / max_steps."""
        return self.state.global_step / max(self.state.max_steps, 1)

    def _layout(self) -> Layout:
        """Rows of one micro-batch, of one process's optimizer step (VPPO's TAS pools on them) and of one prompt's group."""
        micro = self.args.per_device_train_batch_size
        return Layout(micro_batch=micro, step=micro * self.args.gradient_accumulation_steps, group=self.num_generations)

    def _signals(self, batch: dict[str, Any], inputs: list[dict[str, Any]]) -> TokenSignals:
        """The rollout policy's view of every completion token (no grad); nothing to compute for `uniform`.

        Label signals come from the completion text (the ground-truth `role` of the oracle_roles control)
        and the example's target text (`on_target`, of oracle_first_error).
        """
        mask = batch["completion_mask"].bool()
        targets = [row.get("target") for row in inputs]
        labels = label_signals(self.processing_class, batch["completion_ids"], mask, self.needs & LABEL_SIGNALS, targets)
        scored = self.needs - LABEL_SIGNALS
        if not scored:
            return TokenSignals(mask=mask, **labels)
        extra = {}
        if self.counterfactual is not None:
            layout = family_of(self.model.config).patch_layout(self.processing_class)
            extra = counterfactual_batch(
                self.counterfactual, batch, inputs, self.processing_class, self._counterfactual_noise, layout,
                **self.recipe.counterfactual_options,
            )  # fmt: skip
        with self._whole_policy() as policy:
            signals = score_policy(
                policy,
                {**batch, **extra},
                needs=scored,
                counterfactual=self.counterfactual,
                chunk_size=self.chunk_size,
                temperature=self.temperature,
                attention_layers=self.attention_layers,
                entropy_top_p=self.entropy_top_p[0],
                renormalize_top_p=self.entropy_top_p[1],
                batch_size=self.args.per_device_train_batch_size,  # forwards no larger than the training micro-batch
            )
        return replace(signals, **labels)

    @contextmanager
    def _whole_policy(self) -> Iterator[Any]:
        """The policy as TRL generates with it: unwrapped, ZeRO-3 shards gathered, FSDP's root parameters
        summoned. Scoring reads lm_head's weight directly, which a sharded module does not hold.
        With LoRA: the model under peft's wrapper, whose layers run the adapter, so that scoring finds
        its submodules by the model's own names.
        Under the accelerator's autocast, as the wrapped model's forward runs: scoring calls submodules
        directly, and under FSDP the summoned root weights are fp32 while wrapped blocks compute in bf16."""
        with (
            unwrap_model_for_generation(self.model_wrapped, self.accelerator, gather_deepspeed3_params=True) as policy,
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
            self.accelerator.autocast(),
        ):
            yield without_peft_wrapper(policy)

    def _global_batch(self, signals: TokenSignals, advantages: Tensor) -> tuple[TokenSignals, Tensor]:
        """Every process's rows in process order, padded to the longest completion (padding is masked out)."""
        if self.accelerator.num_processes == 1:
            return signals, advantages

        def gather(t: Tensor) -> Tensor:
            return self.accelerator.gather(self.accelerator.pad_across_processes(t, dim=1))

        scored = {name: gather(getattr(signals, name)) for name in signals.available()}
        mask = gather(signals.mask.int()).bool()  # gloo cannot gather bool tensors
        return TokenSignals(mask=mask, **scored), self.accelerator.gather(advantages)

    def _local_rewards(self, rows: int) -> Tensor:
        """This process's rows of the last round's total rewards (TRL gathers rewards over processes)."""
        start = self.accelerator.process_index * rows
        return self._rewards[start : start + rows]

    def _count_nonfinite(self, what: str, count: int) -> None:
        self._nonfinite[what] += count
        if count:
            log.warning("step %d: %d non-finite %s guarded", self.state.global_step, count, what)

    def _local_rows(self, w: Tensor, width: int) -> Tensor:
        """This process's rows of the global weights, cut back to its own completion width."""
        rows = w.shape[0] // self.accelerator.num_processes
        start = self.accelerator.process_index * rows
        return w[start : start + rows, :width]

    def _log_weights(self, w: Tensor, signals: TokenSignals) -> None:
        """Statistics of the global batch: the same on every process."""
        metrics = self._mode_metrics()
        for name, value in weight_stats(w, signals.mask).items():
            metrics[f"weights/{name}"].append(value)
        for name in sorted(self.recipe.weight_needs):
            values = getattr(signals, name)[signals.mask]
            metrics[f"signals/{name}_mean"].append(values.mean().item() if values.numel() else 0.0)

    # -- loss: the recipe's auxiliary loss and VPPO's sampled-token entropy penalty ---------------------
    def _compute_loss(self, model, inputs):
        """TRL's loss, plus the recipe's auxiliary loss and entropy_penalty × mean(−log π_θ(o_t)) over the
        sampled tokens (VPPO's term).

        Means over tokens are over every loss token of the optimizer step on all processes, whatever the
        micro-batches, as VPPO's code (dp_actor.py, EasyR1's token-weighted micro-batches): each
        micro-batch's sum is divided by the step's token count per process, as TRL's "dapo" loss is.
        """
        loss = super()._compute_loss(model, inputs)
        logps, self._last_logps = self._last_logps, None
        if not self.entropy_penalty and self.recipe.loss is None:
            return loss
        mask = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        tokens = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes  # of the generated batch
        if self.model.training:
            tokens = tokens * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        metrics = self._mode_metrics()
        if self.recipe.loss is not None:
            old = inputs.get("old_per_token_logps")
            aux = self.recipe.loss(
                LossInputs(
                    logps=logps, old_logps=logps.detach() if old is None else old, advantages=inputs["advantages"], mask=mask,
                    tokens=tokens, signals={name: inputs[LOSS_SIGNAL + name] for name in self.recipe.loss_needs},
                    model=model, inputs=inputs, logps_with=lambda overrides: self._logps_with(model, inputs, overrides),
                    image_processor=getattr(self.processing_class, "image_processor", None), generator=self._loss_noise,
                    progress=self._progress(),
                )
            )  # fmt: skip
            metrics[f"aux_loss/{self.recipe.spec.loss.name}"].append(self.accelerator.gather(aux.detach()).mean().item())
            loss = loss + aux
        if self.entropy_penalty:
            penalty = (-logps * mask).sum() / tokens
            metrics["entropy_penalty/sampled"].append(self.accelerator.gather(penalty.detach()).mean().item())
            loss = loss + self.entropy_penalty * penalty
        return loss

    def _logps_with(self, model, inputs: dict[str, Any], overrides: dict[str, Any]) -> Tensor:
        """The micro-batch's per-token log-probs, as TRL's loss forward computes them, with some model inputs replaced."""
        keys = (  # the model inputs TRL's _compute_loss passes
            "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
            "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
        )  # fmt: skip
        kwargs = {key: inputs.get(key) for key in keys} | overrides
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logits_to_keep = inputs["completion_ids"].size(1)
        return GRPOTrainer._get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **kwargs)[0]

    # -- signals from the loss forward (train.signals_from_loss) --------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.signals_from_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # A copy takes the weighted advantages: TRL reuses the buffered micro-batch in later updates.
        self._loss_inputs = dict(inputs)
        try:
            return super().compute_loss(model, self._loss_inputs, return_outputs, num_items_in_batch)
        finally:
            self._loss_inputs = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        """TRL's forward, keeping its log π_θ(o_t) (with grad) for VPPO's penalty; with signals_from_loss,
        the loss forward (the one that computes entropies) also weights the micro-batch's advantages;
        with reuse_scoring_logps, TRL's old-policy forward is skipped (_trl_batch)."""
        if self._old_logps_pending and model is self.model:  # TRL's old-policy forward: scoring gives its log-probs (_trl_batch)
            self._old_logps_pending = False
            return None, None, None
        inputs, self._loss_inputs = self._loss_inputs, None  # the loss runs one forward per micro-batch
        forward = super()._get_per_token_logps_and_entropies
        if inputs is None or not kwargs.get("compute_entropy"):
            out = forward(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        else:
            policy = without_peft_wrapper(self.accelerator.unwrap_model(model))
            recorder = (
                image_attention_of(policy, input_ids, attention_mask, logits_to_keep, self.attention_layers, self.chunk_size)
                if "attn_image" in self.needs
                else nullcontext([])
            )
            with recorder as attention:
                out = forward(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
            self._weight_from_loss_forward(inputs, entropy=out[1], attention=attention[0] if attention else None)
        self._last_logps = out[0]
        return out

    def _weight_from_loss_forward(self, inputs: dict[str, Any], entropy: Tensor, attention: Tensor | None) -> None:
        """Weights the micro-batch's advantages from its loss forward's entropy and attention, before TRL's loss reads them."""
        mask = inputs["completion_mask"].bool() if "tool_mask" not in inputs else (inputs["completion_mask"] * inputs["tool_mask"]).bool()
        found = {"entropy": entropy.detach().float(), "attn_image": attention}
        local = TokenSignals(mask=mask, **{name: found[name].masked_fill(~mask, 0.0) for name in self.needs})
        w, guarded = self._weights(local, inputs["advantages"])
        self._mode_metrics()["guard/nonfinite_signals"].append(float(guarded))
        if guarded:
            log.warning("step %d: %d non-finite signals guarded", self.state.global_step, guarded)
        inputs["advantages"] = inputs["advantages"].unsqueeze(1) * w

    # -- saving and resuming ----------------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Restore a checkpoint's weights through from_pretrained, which maps their names.

        save_pretrained writes Qwen2.5-VL's weights under the original checkpoint names
        (`model.layers.*`, `visual.*`), and transformers 5.23 resumes with a plain
        load_state_dict(strict=False), which matches none of them and silently keeps the initial
        weights (huggingface/transformers#43701). FSDP checkpoints hold the model's own names.
        The concrete class is named, so no checkpoint code runs (trust_remote_code is moot).
        A LoRA checkpoint holds the adapter only, which must come back whole.
        """
        if self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = model if model is not None else self.model
        if is_peft_model(model):
            return load_adapter_weights(model, resume_from_checkpoint)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=model.dtype, local_files_only=True)
        model.load_state_dict(saved.state_dict())  # strict: every weight comes back or this fails

    @contextmanager
    def gathered_policy(self) -> Iterator[Any]:
        """The trained policy with every parameter whole (ZeRO-3 and FSDP shard them). Enter it on
        every process (gathering is collective); save from the main process inside."""
        with (
            self._dist.gather_params(list(self.model.parameters())),
            self._dist.summon_full_params(self.model_wrapped, recurse=True, writeback=False),
        ):
            yield self.accelerator.unwrap_model(self.model)

    # -- helpers ----------------------------------------------------------------------------------------
    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        _wait_for_gpu()
        start = time.perf_counter()
        try:
            yield
        finally:
            _wait_for_gpu()
            self._seconds[part] += time.perf_counter() - start

    def _mode_metrics(self) -> dict[str, list[float]]:
        return self._metrics["train" if self.model.training else "eval"]

    def _on_every_process(self, flag: bool) -> bool:
        return bool(self.accelerator.gather(torch.tensor([int(flag)], device=self.accelerator.device)).all())

    def _sum_over_processes(self, counts: list[int]) -> list[int]:
        local = torch.tensor(counts, device=self.accelerator.device)
        return self.accelerator.gather(local).view(-1, len(counts)).sum(0).tolist()


def finite_signals(signals: TokenSignals) -> tuple[TokenSignals, int]:
    """`signals` without the tokens that hold a NaN or infinite signal, and how many there were.

    Such a token leaves the mask (its values become 0), so it gets weight 0 and stays out of the
    batch-wide statistics (top-rho thresholds, VPPO's min/max), which a single NaN would poison.
    """
    bad = torch.zeros_like(signals.mask)
    for name in signals.available():
        bad |= signals.mask & ~torch.isfinite(getattr(signals, name))
    if not bad.any():
        return signals, 0
    mask = signals.mask & ~bad
    kept = {name: getattr(signals, name).masked_fill(~mask, 0.0) for name in signals.available()}
    return TokenSignals(mask=mask, **kept), int(bad.sum())


def load_adapter_weights(model: Any, checkpoint: str) -> None:
    """Set the active adapter of a peft model from a checkpoint's adapter, every weight or none."""
    from peft import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict

    saved = load_peft_weights(checkpoint, device="cpu")
    expected = get_peft_model_state_dict(model)
    if saved.keys() != expected.keys():
        raise ValueError(
            f"checkpoint {checkpoint} holds another adapter ({len(saved.keys() - expected.keys())} unknown and "
            f"{len(expected.keys() - saved.keys())} missing weights, e.g. {sorted(saved.keys() ^ expected.keys())[:2]})"
        )
    set_peft_model_state_dict(model, saved)


def without_peft_wrapper(model: Any) -> Any:
    """The model under peft's wrapper (its LoRA layers in place and active), or `model` itself."""
    return model.get_base_model() if is_peft_model(model) else model


def _derived_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integers (seed, step, ...)."""
    return int(np.random.SeedSequence(parts).generate_state(1)[0])


def _wait_for_gpu() -> None:
    """GPU work is asynchronous: wait for it, so that a timed part counts the work it queued."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
