"""KL-Cov (Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", arXiv 2505.22617).

Entropy collapse is driven by tokens whose log-prob and advantage covary most; KL-Cov puts a KL
penalty on exactly those: over the valid tokens of a micro-batch, cov_t = (A_t − mean A)(log π_θ(o_t)
− mean log π_θ) (detached), the k = max(1, ⌊N · kl_cov_ratio⌋) largest are selected, and their
per-token loss gets + ppo_kl_coef · |log π_θ(o_t) − log π_old(o_t)|. This module is that added term.

Follows verl (volcengine/verl) verl/trainer/ppo/core_algos.py `compute_policy_loss_kl_cov`
(registered as policy loss "kl_cov"; defaults kl_cov_ratio 0.0002, ppo_kl_coef 1.0, adapted there
from PRIME-RL/Entropy-Mechanism-of-RL). verl's kl_cov loss is the UNCLIPPED −A·ratio plus this term;
here the base stays TRL's clipped loss: on-policy (train.updates_per_generation 1, one update per
generated batch) the ratio is 1 at the update and the clip never binds, so the gradients are equal.
The advantages are the method's (weighted) ones, as verl's token-level advantages.
On-policy the penalty is 0 and so is its gradient (|x| at x = 0): KL-Cov acts only on the updates
after the first of a generated batch, i.e. with train.updates_per_generation > 1 (verl's PPO
mini-batches; the paper's runs take several per rollout batch). Ties among equal
covariances: torch.topk's order, as verl's. Mean: token mean over the optimizer step (verl: per
micro-batch token-mean). Forwards: none beyond TRL's loss forward.
Random twin (`random: true`, params' random_kl_cov): the same number of valid tokens drawn uniformly
from the step's generator, "same sparsity, no signal".
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.losses import LossFn, LossInputs, register_loss
from tokencredit.weighting import check_range


def top_covariance(advantages: Tensor, logps: Tensor, mask: Tensor, ratio: float) -> Tensor:
    """Bool [B, T]: the max(1, ⌊N·ratio⌋) valid tokens with the largest (A − Ā)(log π − mean log π)."""
    valid = mask.bool()
    selected = torch.zeros_like(valid)
    if not valid.any():
        return selected
    adv, logp = advantages.detach()[valid], logps.detach()[valid]
    cov = (adv - adv.mean()) * (logp - logp.mean())
    count = max(1, int(cov.numel() * ratio))
    flat = selected.view(-1)
    flat[valid.view(-1).nonzero(as_tuple=True)[0][torch.topk(cov, count, largest=True).indices]] = True
    return selected


def random_tokens(mask: Tensor, ratio: float, generator: torch.Generator) -> Tensor:
    """Bool [B, T]: max(1, ⌊N·ratio⌋) valid tokens drawn uniformly (none without valid tokens)."""
    valid = mask.bool()
    selected = torch.zeros_like(valid)
    positions = valid.view(-1).nonzero(as_tuple=True)[0]
    if positions.numel():
        count = max(1, int(positions.numel() * ratio))
        order = torch.randperm(positions.numel(), generator=generator, device=generator.device).to(positions.device)
        selected.view(-1)[positions[order[:count]]] = True
    return selected


@register_loss("kl_cov")
def kl_cov(kl_cov_ratio: float = 0.0002, ppo_kl_coef: float = 1.0, random: bool = False) -> LossFn:
    check_range("kl_cov_ratio", kl_cov_ratio, 0.0, 1.0, low_open=True)
    check_range("ppo_kl_coef", ppo_kl_coef, 0.0)

    def loss(x: LossInputs) -> Tensor:
        advantages = x.advantages.expand_as(x.logps)
        if random:
            selected = random_tokens(x.mask, kl_cov_ratio, x.generator)
        else:
            selected = top_covariance(advantages, x.logps, x.mask, kl_cov_ratio)
        return ppo_kl_coef * x.token_mean((x.logps - x.old_logps).abs() * selected)

    return loss
