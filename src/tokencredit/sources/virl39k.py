"""ViRL39K as TIGER-Lab/ViRL39K publishes it.

39Krelease.parquet beside the unzipped images/ folder: `qid`, `question` ("<image>..."), `answer`
("\\boxed{60}"), `image` (list of paths such as "images/<qid>-0.jpg"), `category`, `source` and the
PassRate annotations.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item, unbox
from tokencredit.sources.questions import strip_image_tokens
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item

KEPT = ("source", "PassRate_7BTrained", "PassRate_32BTrained")


@register("virl39k", splits={"train": ("39Krelease.parquet",)}, required=("qid", "question", "answer", "image"))
def convert(row: dict, ref: RowRef) -> Item:
    question = strip_image_tokens(str(row["question"]))
    metadata = {key: row[key] for key in KEPT if key in row}
    return inferred_item(
        str(row["qid"]), question, unbox(str(row["answer"])), row["image"], str(row.get("category") or ""), metadata
    )
