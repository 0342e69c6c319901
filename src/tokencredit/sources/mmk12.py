"""MMK12 as FanqingM/MMK12 publishes it: data/{train,test}-*.parquet with `id`, `question`,
`answer`, `subject` and one `image`. Train answers are fill-in values; test answers are mostly
option letters, with the options in the question text."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item, unbox
from tokencredit.sources.questions import strip_image_tokens
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item


@register(
    "mmk12",
    splits={split: (f"data/{split}-*.parquet",) for split in ("train", "test")},
    required=("id", "question", "answer", "image"),
    default_split="test",
)
def convert(row: dict, ref: RowRef) -> Item:
    question = strip_image_tokens(str(row["question"]))
    return inferred_item(str(row["id"]), question, unbox(str(row["answer"])), row["image"], str(row.get("subject") or ""))
