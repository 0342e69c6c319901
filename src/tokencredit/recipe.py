"""A method as a recipe of components (issue 22, docs/components.md "Method recipe").

    recipe = resolve("papo", params.methods["papo"])      # every component built and checked once
    recipe.weighting(signals, advantages, ctx)            # token weights (uniform when the spec names none)
    recipe.loss(LossInputs(...))                          # auxiliary loss added to TRL's, or None
    recipe.transform(prompts, TransformContext(...))      # rollout transform, or None
    recipe.reward                                         # RewardSet replacing the task's reward, or None

The components' registries are `tokencredit.weighting`, `tokencredit.losses`,
`tokencredit.transforms` and `tokencredit.reward_sets`; the counterfactual input (`tokencredit.counterfactual`) is shared by the
weighting and the loss: one per method. Errors name `methods.<name>.<component>...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokencredit.losses import LossFn, build_loss, loss_named
from tokencredit.reward_sets import RewardSet, build_reward_set
from tokencredit.transforms import TransformFn, build_transform
from tokencredit.weighting import METHODS, WeightFn, build_weighting, default_counterfactual, registered, required_signals


@dataclass(frozen=True)
class Recipe:
    name: str
    weighting: WeightFn
    loss: LossFn | None
    transform: TransformFn | None
    reward: RewardSet | None
    weight_needs: frozenset[str]  # signals the weighting reads
    loss_needs: frozenset[str]  # signals the loss reads (no grad, carried into each micro-batch)
    counterfactual: str | None
    counterfactual_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the perturbation
    spec: Any = None  # the params.MethodSpec it was resolved from

    @property
    def needs(self) -> frozenset[str]:
        return self.weight_needs | self.loss_needs

    def components(self) -> dict[str, str]:
        """Each component the method uses, with its hyperparameters: the run's MLflow params and the report's table."""

        def named(name: str, hparams: dict[str, Any]) -> str:
            return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(hparams.items()))})" if hparams else name

        out = {"weighting": named(self.spec.weighting, self.spec.hparams)}
        if self.spec.loss is not None:
            out["loss"] = named(self.spec.loss.name, self.spec.loss.hparams)
        if self.spec.transform is not None:
            out["transform"] = named(self.spec.transform.name, self.spec.transform.hparams)
        if self.spec.reward is not None:
            out["reward"] = named(self.spec.reward.name, self.spec.reward.hparams)
        out["counterfactual"] = self.counterfactual or "none"
        return out


def _component(name: str, key: str, build, *args, **hparams):
    try:
        return build(*args, **hparams)
    except ValueError as err:
        raise ValueError(f"methods.{name}.{key}: {err}") from None


def resolve(name: str, spec: Any) -> Recipe:
    """Build and check every component of `methods.<name>` (a params.MethodSpec)."""
    if spec.weighting not in METHODS:
        raise ValueError(f"methods.{name}.weighting: unknown weighting {spec.weighting!r}; registered: {registered()}")
    weighting = _component(name, "hparams", build_weighting, spec.weighting, **spec.hparams)
    loss = options = None
    loss_needs: frozenset[str] = frozenset()
    loss_counterfactual = None
    if spec.loss is not None:
        loss = _component(name, "loss", build_loss, spec.loss.name, **spec.loss.hparams)
        declared = loss_named(spec.loss.name)
        loss_needs, loss_counterfactual = declared.needs, declared.counterfactual
        options = {key: {**declared.defaults, **spec.loss.hparams}[key] for key in declared.counterfactual_options}
    transform = None
    if spec.transform is not None:
        transform = _component(name, "transform", build_transform, spec.transform.name, **spec.transform.hparams)
    reward = None
    if spec.reward is not None:
        reward = _component(name, "reward", build_reward_set, spec.reward.name, **spec.reward.hparams)
    defaults = {c for c in (default_counterfactual(spec.weighting), loss_counterfactual) if c is not None}
    if spec.counterfactual is None and len(defaults) > 1:
        raise ValueError(f"methods.{name}: weighting and loss use different counterfactual inputs {sorted(defaults)}: set methods.{name}.counterfactual")
    if spec.counterfactual is not None and not defaults:
        raise ValueError(f"methods.{name}.counterfactual: weighting {spec.weighting!r} uses no counterfactual input, nor does the method's loss")
    counterfactual = spec.counterfactual or next(iter(defaults), None)
    return Recipe(
        name=name,
        weighting=weighting,
        loss=loss,
        transform=transform,
        reward=reward,
        weight_needs=frozenset(required_signals(spec.weighting)),
        loss_needs=loss_needs,
        counterfactual=counterfactual,
        counterfactual_options=options or {},
        spec=spec,
    )
