"""LogicVista as its GitHub release publishes it: data/dataset.json, an object of rows keyed by id
("v1_0"), each with `imagename` (under data/images/), `question`, `answer` (a letter, letters such
as "A, C", or a number), `reasoning`, `skill` (list) and `capability` (list)."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item
from tokencredit.sources.records import KEY, RowRef
from tokencredit.sources.schema import Item


@register("logicvista", splits={"test": ("data/dataset.json",)}, required=("imagename", "question", "answer"))
def convert(row: dict, ref: RowRef) -> Item:
    skills = row.get("skill") or [""]
    return inferred_item(
        str(row.get(KEY) or ref.position),
        str(row["question"]).strip(),
        str(row["answer"]).strip(),
        [f"data/images/{row['imagename']}"],
        str(skills[0]),
        {"skill": skills, "capability": row.get("capability")},
    )
