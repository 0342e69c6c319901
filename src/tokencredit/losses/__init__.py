"""Auxiliary losses (issue 22): terms a method adds to TRL's policy loss, one module per loss, one registry.

    fn = build_loss("papo", gamma=0.01)      # hparams override the loss's defaults
    extra = fn(LossInputs(...))              # a scalar with grad; the trainer adds it to TRL's loss

A loss is a builder that validates its hyperparameters and returns fn(LossInputs) -> Tensor; it
registers itself with `@register_loss(name, needs=..., counterfactual=..., counterfactual_options=...,
grad_forwards=...)`, so a new loss is one new file (imported at the bottom of this module).
- `needs`: signals scored once per generation batch with the rollout policy (no grad), e.g. `logp_cf`;
  the trainer carries them through TRL's shuffling into every micro-batch (`LossInputs.signals`).
- `counterfactual`: the input those counterfactual signals are scored on (shared with the method's
  weighting); `counterfactual_options`: hyperparameters of the loss passed on to the perturbation
  (`tokencredit.counterfactual.perturb_pixel_values`), e.g. PAPO's black_prob.
- `grad_forwards` / `nograd_forwards`: forwards with / without grad the loss runs itself per
  micro-batch beyond TRL's loss forward (the forward-budget table of issue 21 counts them).
Builder keyword defaults are the authors' defaults; a bad or unknown hyperparameter is a ValueError
naming it (the weighting registry's checks).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from tokencredit.signals import SIGNALS


@dataclass(frozen=True)
class LossInputs:
    """One micro-batch as the policy loss sees it.

    logps: [B, T] log π_θ(o_t) WITH grad, from TRL's loss forward. old_logps: the rollout policy's (no
    grad; equal to logps on-policy). advantages: [B, T], the method's weights already applied.
    mask: [B, T] float loss mask. tokens: the loss tokens of the whole optimizer step on this process,
    so that `token_mean` over the step's micro-batches is the token mean of the step (TRL's "dapo"
    normaliser, EasyR1's token-mean). signals: the no-grad signals the loss `needs`, these rows.
    model/inputs: the policy and TRL's micro-batch. logps_with(overrides): this micro-batch's log π_θ(o_t)
    with some model inputs replaced (e.g. {"pixel_values": ...}), for a loss that runs a forward of its
    own (with grad unless called under torch.no_grad). image_processor: the processor's, for pixel
    perturbations; generator: the step's noise stream; progress: global_step / max_steps.
    """

    logps: Tensor
    old_logps: Tensor
    advantages: Tensor
    mask: Tensor
    tokens: Tensor | float
    signals: dict[str, Tensor] = field(default_factory=dict)
    model: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)
    logps_with: Callable[[dict[str, Any]], Tensor] | None = None
    image_processor: Any = None
    generator: torch.Generator | None = None
    progress: float = 0.0

    def token_mean(self, values: Tensor) -> Tensor:
        return (values * self.mask).sum() / self.tokens


LossFn = Callable[[LossInputs], Tensor]


@dataclass(frozen=True)
class Loss:
    build: Callable[..., LossFn]
    needs: frozenset[str]
    counterfactual: str | None
    counterfactual_options: tuple[str, ...]
    grad_forwards: int
    nograd_forwards: int
    defaults: dict[str, Any]


LOSSES: dict[str, Loss] = {}


def register_loss(
    name: str,
    needs: Iterable[str] = (),
    counterfactual: str | None = None,
    counterfactual_options: Iterable[str] = (),
    grad_forwards: int = 0,
    nograd_forwards: int = 0,
) -> Callable:
    """Register the decorated builder as auxiliary loss `name`."""

    def add(build: Callable[..., LossFn]) -> Callable[..., LossFn]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        unknown = set(needs) - set(SIGNALS)
        if unknown:
            raise ValueError(f"loss {name!r} needs unknown signals {sorted(unknown)}")
        defaults = {p.name: p.default for p in inspect.signature(build).parameters.values()}
        LOSSES[name] = Loss(build, frozenset(needs), counterfactual, tuple(counterfactual_options), grad_forwards, nograd_forwards, defaults)
        return build

    return add


def registered_losses() -> list[str]:
    return sorted(LOSSES)


def loss_named(name: str) -> Loss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; registered: {registered_losses()}")
    return LOSSES[name]


def build_loss(name: str, **hparams: Any) -> LossFn:
    from tokencredit.weighting import _check_types

    loss = loss_named(name)
    _check_types(name, loss.defaults, hparams)
    fn = loss.build(**hparams)
    fn.__name__ = name
    return fn


# Each import registers one loss.
from tokencredit.losses import cfpo, dvrp, kl_cov, papo  # noqa: E402, F401
