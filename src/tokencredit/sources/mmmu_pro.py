"""MMMU-Pro's vision setting as MMMU/MMMU_Pro publishes it: vision/test-*.parquet with `id`, `image`
(a screenshot holding the question and its options), `options` (a list, or its Python repr as a
string), `answer` (a letter) and `subject`."""

from __future__ import annotations

import ast

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

QUESTION = "Answer the question shown in the image by choosing one of the options it shows."


def _options(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise BadRow(f"options {value[:80]!r} is not a list") from None
    if not isinstance(value, (list, tuple)):
        raise BadRow(f"options is a {type(value).__name__}, not a list")
    return tuple(str(option) for option in value)


@register("mmmu_pro_vision", splits={"test": ("vision/test-*.parquet",)}, required=("id", "image", "options", "answer"))
def convert(row: dict, ref: RowRef) -> Item:
    return Item(
        id=str(row["id"]),
        question=QUESTION,
        answer=str(row["answer"]).strip(),
        answer_type="multiple_choice",
        images=image_list(row["image"]),
        choices=_options(row["options"]),
        family=str(row.get("subject") or ""),
    )
