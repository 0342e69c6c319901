"""LogicVista as its GitHub release publishes it: data/dataset.json, an object of rows keyed by id
("v1_0"), each with `imagename` (under data/images/), `question`, `answer` (a letter, letters such
as "A, C", or a number), `reasoning`, `skill` (list) and `capability` (list)."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred
from tokencredit.sources.records import KEY, RowRef
from tokencredit.sources.schema import Item


@register("logicvista", splits={"test": ("data/dataset.json",)}, required=("imagename", "question", "answer"))
def convert(row: dict, ref: RowRef) -> Item:
    question = str(row["question"]).strip()
    answer = str(row["answer"]).strip()
    answer_type, choices = inferred(answer, question)
    skills = row.get("skill") or [""]
    return Item(
        id=str(row.get(KEY) or ref.position),
        question=question,
        answer=answer,
        answer_type=answer_type,
        images=(f"data/images/{row['imagename']}",),
        choices=choices,
        family=str(skills[0]),
        metadata={"skill": skills, "capability": row.get("capability")},
    )
