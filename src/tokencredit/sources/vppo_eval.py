"""VPPO-Eval's two benchmark files that PAPO-Eval lacks, as chamber111/VPPO-Eval publishes them: a
LLaMA-Factory data folder, data/vppo/<name>.json (a list of ShareGPT rows, `messages` and `images`,
no id: tokencredit.sources.sharegpt) and loose images under data/images/<name>/, which the rows name
"./data/images/<name>/<file>" (the awesome-perception-aware-rlvr fork reads the same files for its
vppo, pgpo and comparison suites: eval/prepare/vppo_eval.py and tests/test_eval_loaders.py).

Splits (rows): DynaMath_DynaMath_Sample (3,666: DynaMath's variants filtered to verifiable answers)
and MathLLMs_MathVision (2,907: MATH-Vision's test set filtered the same way). A row's id is its split
and position ("DynaMath_DynaMath_Sample_12").
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item
from tokencredit.sources.sharegpt import sharegpt_item

SPLITS = ("DynaMath_DynaMath_Sample", "MathLLMs_MathVision")


@register("vppo_eval", splits={split: (f"data/vppo/{split}.json",) for split in SPLITS}, required=("messages",))
def convert(row: dict, ref: RowRef) -> Item:
    return sharegpt_item(row, f"{ref.split}_{ref.position}", ref.split)
