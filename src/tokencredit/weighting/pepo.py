"""PEPO (arXiv 2603.22847): perception-entropy gated softmax weights, phased in over training.

Authors' code: xzxxntxdy/PEPO at 2b1e78889f314935d83e2a0c30009cc8c6ce43d0, src/pepo/train/grpo_trainer.py,
`PepoGRPOTrainer._compute_vision_scores_cosine` (the `hidden_sim` signal, signals.py),
`_get_pepo_per_token_outputs_single` (the weights) and `_compute_loss_and_metrics` (the schedule);
defaults from scripts/train/train_pepo_geometry3k_qwen25vl_3b.sh (gate_alpha 0.05, gate_temperature 1.8).

Per response, with v_t = hidden_sim (token t's hidden state's mean cosine with the image tokens,
averaged over layers) and H_t = entropy, each min-max normalised over the response (range floored
at 1e-6): gate_t = 1 + α tanh(v̂_t + Ĥ_t - mean_t(v̂ + Ĥ)); w_t = n_i softmax_t(v_t gate_t / τ), so
the weights of a response sum to its length. The loss multiplies each token by
1 - λ + λ w_t with λ = global_step / max_steps (`Context.progress`): uniform at the start, w at
the end. `schedule=False` uses w from the first step.
A prompt without image tokens: their score falls back to every position; hidden_sim is 0 there.
Their weights keep the gradient of the hidden states (nothing detaches them); here they are data,
as every weighting's (and as the fork's `_compute_pepo_token_scaling`, which detaches them).

Counterfactual: none (one forward, the real image). Scope: per response; λ from the trainer's
step. Ties: none: a soft weighting, equal scores get equal weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, check_range, register
from tokencredit.weighting.vepo import row_unit


@register(
    "pepo", needs=("hidden_sim", "entropy"),
    scope="per response (softmax over its tokens); the mix with 1 follows the training progress",
    ties="none: a soft weighting, equal scores get equal weights",
)  # fmt: skip
def pepo(gate_alpha: float = 0.05, temperature: float = 1.8, schedule: bool = True) -> WeightFn:
    check_range("gate_alpha", gate_alpha, 0.0)
    check_range("temperature", temperature, 0.0, low_open=True)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        count = mask.sum(1, keepdim=True).clamp(min=1)
        vision = signals.require("hidden_sim").float()
        mixed = row_unit(vision, mask, eps=1e-6) + row_unit(signals.require("entropy").float(), mask, eps=1e-6)
        gate = 1.0 + gate_alpha * torch.tanh(mixed - (mixed * mask).sum(1, keepdim=True) / count)
        logits = (vision * gate / temperature).masked_fill(~mask, -torch.inf)
        w = torch.softmax(logits, dim=1).nan_to_num(0.0) * count  # a response without tokens: all -inf
        progress = min(max(context.progress, 0.0), 1.0) if schedule else 1.0
        return (1.0 - progress + progress * w) * mask

    return weights
