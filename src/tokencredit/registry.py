"""The registry of a component kind with no declared metadata (rollout transforms, reward sets):
builders by name, their keyword defaults (the authors'), built with checked hyperparameters.
Weightings and losses keep registries of their own, with what they declare (signals, counterfactual
input, forwards)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.builders: dict[str, Callable[..., T]] = {}
        self.defaults: dict[str, dict[str, Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(build: Callable[..., T]) -> Callable[..., T]:
            if name in self.builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self.builders[name] = build
            self.defaults[name] = {p.name: p.default for p in inspect.signature(build).parameters.values()}
            return build

        return add

    def names(self) -> list[str]:
        return sorted(self.builders)

    def build(self, name: str, **hparams: Any) -> T:
        from tokencredit.weighting import _check_types

        if name not in self.builders:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {self.names()}")
        _check_types(name, self.defaults[name], hparams)
        return self.builders[name](**hparams)
