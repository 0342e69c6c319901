"""Geometry3K as hiyouga/geometry3k publishes it (the copy ToR, PAPO and VPPO use).

data/{train,validation,test}-*.parquet with `images` (list of images), `problem` ("<image>Find x.")
and `answer` (a number or expression). Rows have no id: it is the split and the row's position.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred, unbox
from tokencredit.sources.images import image_list
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
    answer = unbox(str(row["answer"]))
    answer_type, choices = inferred(answer, question)
    return Item(
        id=f"{ref.split}-{ref.position:05d}",
        question=question,
        answer=answer,
        answer_type=answer_type,
        images=image_list(row["images"]),
        choices=choices,
        family="geometry",
    )
