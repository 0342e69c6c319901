"""Dataset adapters: local copies of published training sets and benchmarks, in the one schema.

    adapter = get_adapter("mathvista")
    frame, skipped = convert(adapter, Path("/data/MathVista"), "testmini", image_dir, "images/mathvista")

An adapter turns one published row into an `Item` (tokencredit.sources.schema). It registers
with its published splits and the fields every row must have, so a new dataset is one new file
imported at the bottom. A split lists its layouts, as the releases lay their files out: each a glob
under the release directory, or a tuple of globs read together; the first layout present is read.

    @register("geometry3k", splits={"test": ("data/test-*.parquet",)}, required=("images", "problem", "answer"))
    def convert(row: dict, ref: RowRef) -> Item: ...

`convert` (tokencredit.sources.convert) does the rest for every adapter: required fields, answer
types, images, duplicate ids, and the error-or-skip policy for malformed rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tokencredit.params import Params
from tokencredit.sources.records import Layout, RowRef
from tokencredit.sources.schema import EXTRA_COLUMNS, Item

ConvertRow = Callable[[dict, RowRef], Item]


@dataclass(frozen=True)
class Adapter:
    name: str
    splits: dict[str, tuple[Layout, ...]]  # published split -> its layouts, the first present is read
    default_split: str  # what a benchmark reads when its params name no split
    required: tuple[str, ...]  # fields every published row must have (not null)
    convert: ConvertRow
    columns: tuple[str, ...] = ()  # schema.EXTRA_COLUMNS it writes (VAPO-Thinker: claims)


ADAPTERS: dict[str, Adapter] = {}


def register(
    name: str,
    splits: Mapping[str, Iterable[str | Layout]],
    required: Iterable[str],
    default_split: str | None = None,
    columns: Iterable[str] = (),
) -> Callable[[ConvertRow], ConvertRow]:
    """Register the decorated row converter as adapter `name`."""

    def add(convert: ConvertRow) -> ConvertRow:
        if name in ADAPTERS:
            raise ValueError(f"dataset adapter {name!r} is registered twice")
        default = default_split or next(iter(splits))
        if default not in splits:
            raise ValueError(f"adapter {name!r}: default split {default!r} is not one of its splits {list(splits)}")
        layouts = {s: tuple((g,) if isinstance(g, str) else tuple(g) for g in gs) for s, gs in splits.items()}
        unknown = set(columns) - set(EXTRA_COLUMNS)
        if unknown:
            raise ValueError(f"adapter {name!r}: columns {sorted(unknown)} are not among the schema's extra columns {EXTRA_COLUMNS}")
        ADAPTERS[name] = Adapter(name, layouts, default, tuple(required), convert, tuple(columns))
        return convert

    return add


def registered() -> list[str]:
    return sorted(ADAPTERS)


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset adapter {name!r}; registered: {registered()}")
    return ADAPTERS[name]


def check_sources(params: Params) -> None:
    """The params' real datasets name a registered adapter and one of its published splits.

    params checks the rest (each local copy exists); this check needs the adapters, which sit above it.
    """
    named = [("data.source", params.data.source, "train")] if params.data.source != "synthetic" else []
    if params.data.validation is not None:
        named.append(("data.validation.source", params.data.validation.source, params.data.validation.split))
    named += [(f"benchmarks.{key}.source", spec.source, spec.split) for key, spec in params.benchmarks.items()]
    for key, name, split in named:
        try:
            adapter = get_adapter(name)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None
        if split is not None and split not in adapter.splits:
            raise ValueError(f"{key}: dataset adapter {name!r} has no published split {split!r} (published: {list(adapter.splits)})")
    if params.data.source != "synthetic":
        _check_reward_columns(params, get_adapter(params.data.source))


def _check_reward_columns(params: Params, adapter: Adapter) -> None:
    """A method's reward set reads only columns the training set's adapter writes (VAPO: claims)."""
    from tokencredit.reward_sets import build_reward_set

    for method in params.train.methods:
        spec = params.methods[method].reward
        missing = set(build_reward_set(spec.name, **spec.hparams).columns) - set(adapter.columns) if spec else set()
        if missing:
            raise ValueError(
                f"methods.{method} (reward {spec.name!r}) reads the column(s) {sorted(missing)} of each training row, which "
                f"data.source {adapter.name!r} does not publish (adapters that do: "
                f"{sorted(a.name for a in ADAPTERS.values() if missing <= set(a.columns))}): drop {method!r} from train.methods"
            )


# Each import registers one adapter.
from tokencredit.sources import (  # noqa: E402, F401
    dynamath,
    geometry3k,
    hallusionbench,
    logicvista,
    mathverse,
    mathvision,
    mathvista,
    mmk12,
    mmmu_pro,
    papo_eval,
    papo_train,
    pope,
    vapo_claims,
    virl39k,
    vppo_eval,
    wemath,
)
