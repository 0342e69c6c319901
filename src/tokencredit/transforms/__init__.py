"""Rollout transforms (issue 22): what a method changes in the generation inputs only, one module each.

    fn = build_transform("noisy_rollout")
    prompts = fn(prompts, TransformContext(generator, progress))   # before generation

A transform gets TRL's conversational prompts of one generation call (each row a list of messages
whose image parts hold PIL images) and returns new ones; the completions are sampled from them, but
rewards, signals and the update see the clean prompts (the trainer keeps them). It registers with
`@register_transform(name)`; a new transform is one new file imported at the bottom of this module.
Pixel changes go through `tokencredit.counterfactual`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tokencredit.registry import Registry


@dataclass(frozen=True)
class TransformContext:
    """The step's random generator (seeded from the run's seed and step), training progress in [0, 1]
    (global_step / max_steps) and the group size G (TRL repeats each prompt G times in a row)."""

    generator: torch.Generator
    progress: float = 0.0
    group_size: int = 1


TransformFn = Callable[[list[list[dict[str, Any]]], TransformContext], list[list[dict[str, Any]]]]


TRANSFORMS: Registry[TransformFn] = Registry("transform")
register_transform = TRANSFORMS.register
registered_transforms = TRANSFORMS.names


def build_transform(name: str, **hparams: Any) -> TransformFn:
    fn = TRANSFORMS.build(name, **hparams)
    fn.__name__ = name
    return fn


def image_parts(prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The image parts of one conversational prompt, in order."""
    return [part for message in prompt if isinstance(message["content"], list) for part in message["content"] if part.get("type") == "image"]


# Each import registers one transform.
from tokencredit.transforms import noisy_rollout  # noqa: E402, F401
