"""Geometry3K as hiyouga/geometry3k publishes it (the copy ToR, PAPO and VPPO use).

data/{train,validation,test}-*.parquet with `images` (list of images), `problem` ("<image>Find x.")
and `answer` (a number or expression). Rows have no id: it is the split and the row's position.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item, unbox
from tokencredit.sources.questions import strip_image_tokens
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item


@register(
    "geometry3k",
    splits={split: (f"data/{split}-*.parquet",) for split in ("train", "validation", "test")},
    required=("images", "problem", "answer"),
    default_split="test",
)
def convert(row: dict, ref: RowRef) -> Item:
    question = strip_image_tokens(str(row["problem"]))
    return inferred_item(f"{ref.split}-{ref.position:05d}", question, unbox(str(row["answer"])), row["images"], "geometry")
