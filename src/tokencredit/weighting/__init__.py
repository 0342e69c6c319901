"""Token weighting methods (METHODS.md §2-3): one module per method, one registry.

    fn = build_weighting("tor", gamma_p=0.0)   # hparams override the method's defaults
    w = fn(signals, advantages)                # TokenSignals, [B] -> w [B, T] >= 0, 0 on padding
    w = fn(signals, advantages, Context(generator, layout))   # the trainer's call

A method is a builder that validates its hyperparameters and returns the weight function
(signals, advantages, context) -> w; it registers itself with `@register(name, needs=...,
counterfactual=..., scope=..., ties=...)`, so a new method is one new file (imported at the bottom
of this module). `scope` and `ties` are one-line texts the report shows: which rows a batch-wide
statistic spans, and how equal scores are ranked. Builder keyword defaults are the authors'
defaults; a bad or unknown hyperparameter is a ValueError naming it. `weight_stats(w, mask)` gives
the per-batch numbers to log (frac_selected, frac_boosted, weight_mean, weight_max).

Ties: a top-k selection among equal scores takes a random subset, drawn from `Context.generator`
(the trainer seeds one per step from the run's seed, the same on every process), so a run is
reproducible and no row or position is favoured. Without a context, a generator seeded 0 is used.

Batch-wide quantities (top-rho thresholds of entropy_topk and tor) are taken over exactly the rows a
function is given. The trainer gives them the GLOBAL batch: with several processes it gathers every
process's signals and advantages, weights the gathered batch and keeps each process's own rows, so
the weights do not depend on how the batch is split. VPPO's trajectory scale follows its authors'
micro-batches instead, read from `Context.layout` (see vppo.py).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tokencredit.signals import SIGNALS, TokenSignals

@dataclass(frozen=True)
class Layout:
    """How the trainer splits the weighted rows: consecutive runs of `micro_batch` rows are one
    micro-batch's worth, of `step` rows one process's optimizer step. None: the whole batch."""

    micro_batch: int | None = None
    step: int | None = None
    group: int | None = None  # rows of one prompt's group of completions (VGPO's group-level pools)


@dataclass(frozen=True)
class Context:
    """What a weighting may need beyond signals: the step's random generator (tie-breaking), the batch
    layout and the training progress (global_step / max_steps in [0, 1]: PEPO's schedule)."""

    generator: torch.Generator | None = None
    layout: Layout = Layout()
    progress: float = 0.0

    def tie_generator(self) -> torch.Generator:
        return self.generator if self.generator is not None else torch.Generator().manual_seed(0)


WeightFn = Callable[[TokenSignals, Tensor, Context], Tensor]


@dataclass(frozen=True)
class Method:
    build: Callable[..., WeightFn]
    needs: frozenset[str]
    counterfactual: str | None
    defaults: dict[str, Any]
    scope: str  # the rows a batch-wide statistic spans
    ties: str  # how equal scores are ranked


METHODS: dict[str, Method] = {}

RANDOM_TIES = "random among equal scores, from the step's seeded generator"


def register(
    name: str, needs: Iterable[str] = (), counterfactual: str | None = None, scope: str = "per response", ties: str = RANDOM_TIES
) -> Callable:
    """Register the decorated builder as weighting `name`, which reads signals `needs`."""

    def add(build: Callable[..., WeightFn]) -> Callable[..., WeightFn]:
        if name in METHODS:
            raise ValueError(f"weighting {name!r} is registered twice")
        unknown = set(needs) - set(SIGNALS)
        if unknown:
            raise ValueError(f"weighting {name!r} needs unknown signals {sorted(unknown)}")
        defaults = {p.name: p.default for p in inspect.signature(build).parameters.values()}
        METHODS[name] = Method(build, frozenset(needs), counterfactual, defaults, scope, ties)
        return build

    return add


def registered() -> list[str]:
    return sorted(METHODS)


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown weighting {name!r}; registered: {registered()}")
    return METHODS[name]


def required_signals(name: str) -> set[str]:
    return set(_method(name).needs)


def default_counterfactual(name: str) -> str | None:
    return _method(name).counterfactual


def describe(name: str) -> dict[str, str]:
    """The three facts the report's methods table shows: counterfactual input, batch scope, tie rule."""
    method = _method(name)
    return {"counterfactual": method.counterfactual or "none", "scope": method.scope, "ties": method.ties}


def _check_types(name: str, defaults: dict[str, Any], hparams: dict[str, Any]) -> None:
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for weighting {name!r}; accepted: {sorted(defaults)}")
    for key, value in hparams.items():
        if isinstance(defaults[key], bool):
            ok = isinstance(value, bool)
        elif isinstance(defaults[key], str):
            ok = isinstance(value, str)
        else:  # numeric; bool is an int subclass, so reject it explicitly
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise ValueError(f"{key}={value!r} must be a {type(defaults[key]).__name__}")


def build_weighting(name: str, **hparams: Any) -> WeightFn:
    method = _method(name)
    _check_types(name, method.defaults, hparams)
    weigh = method.build(**hparams)

    def weights(signals: TokenSignals, advantages: Tensor, context: Context = Context()) -> Tensor:
        for signal in sorted(method.needs):
            signals.require(signal)
        if advantages.shape != signals.mask.shape[:1]:
            raise ValueError(f"advantages have shape {tuple(advantages.shape)}, expected [{signals.mask.shape[0]}] (one per response)")
        return weigh(signals, advantages, context).float().masked_fill(~signals.mask, 0.0)

    weights.__name__ = name
    return weights


def weight_stats(w: Tensor, mask: Tensor) -> dict[str, float]:
    """Per-batch statistics for logging: share of valid tokens with w > 0 and with w > 1, mean and max."""
    valid = w[mask]
    if valid.numel() == 0:
        return {"frac_selected": 0.0, "frac_boosted": 0.0, "weight_mean": 0.0, "weight_max": 0.0}
    return {
        "frac_selected": (valid > 0).float().mean().item(),
        "frac_boosted": (valid > 1).float().mean().item(),
        "weight_mean": valid.mean().item(),
        "weight_max": valid.max().item(),
    }


# Helpers shared by the methods.


def check_range(key: str, value: float, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """ValueError naming `key` unless low <= value <= high (low < value when low_open)."""
    if value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{key}={value} must be in {interval}")


def top_count(fraction: float, n: Tensor) -> Tensor:
    """ceil(fraction * n), exact for fractions like 0.3 whose product lands a hair above an integer."""
    return torch.ceil(fraction * n.double() - 1e-6).clamp(min=0).long()


def _ranks(scores: Tensor, generator: torch.Generator) -> Tensor:
    """Rank of each element along the last dim, largest first; equal scores in random order.

    Elements are shuffled first (independently per row), so the stable sort keeps that random order among ties.
    """
    shuffle = torch.rand(scores.shape, generator=generator, device=generator.device).to(scores.device).argsort(dim=-1)
    order = shuffle.gather(-1, torch.argsort(scores.gather(-1, shuffle), dim=-1, descending=True, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks


def batch_top_fraction(scores: Tensor, mask: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Bool [B, T]: the ceil(fraction * N) valid tokens of the batch with the largest scores (ties: random)."""
    masked = scores.float().masked_fill(~mask, -math.inf).flatten()
    keep = _ranks(masked, generator) < top_count(fraction, mask.sum())
    return keep.view(mask.shape) & mask


def row_top_fraction(scores: Tensor, mask: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Bool [B, T]: per response, the ceil(fraction * n_i) valid tokens with the largest scores (ties: random)."""
    masked = scores.float().masked_fill(~mask, -math.inf)
    return (_ranks(masked, generator) < top_count(fraction, mask.sum(1))[:, None]) & mask


def row_min_max(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-response min and max over valid tokens (0 for responses without any)."""
    has = mask.any(1)
    low = scores.masked_fill(~mask, math.inf).amin(1)
    high = scores.masked_fill(~mask, -math.inf).amax(1)
    return torch.where(has, low, 0.0), torch.where(has, high, 0.0)


def conserve_mass(w: Tensor, mask: Tensor) -> Tensor:
    """Rescale each response so its weights sum to its length; all-zero responses stay 0."""
    w = w * mask
    total = w.sum(1, keepdim=True)
    return w * mask.sum(1, keepdim=True) / total.clamp(min=torch.finfo(w.dtype).tiny)


# Each import registers one method.
from tokencredit.weighting import atrl, entropy_topk, oracle_first_error, oracle_roles, pgpo, random_first_error, random_tokens, tor, uniform, vppo  # noqa: E402, F401
from tokencredit.weighting import cgpo, clip_cov, pepo, tor_k3, tor_top_p, vepo, vgpo  # noqa: E402, F401
