"""MATH-Vision as MathLLMs/MathVision publishes it: data/{test,testmini}-*.parquet with `id`,
`question` ("<image1>" placeholders), `options` (list; empty when free-form), `image` (a path) and
`decoded_image`, `answer` (a letter when there are options), `solution`, `level`, `subject`."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import infer_answer_type
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import strip_image_tokens, with_choices
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item


@register(
    "mathvision",
    splits={split: (f"data/{split}-*.parquet",) for split in ("test", "testmini")},
    required=("id", "question", "answer"),
)
def convert(row: dict, ref: RowRef) -> Item:
    options = tuple(str(o) for o in row.get("options") or ())
    answer = str(row["answer"]).strip()
    return Item(
        id=str(row["id"]),
        question=with_choices(strip_image_tokens(str(row["question"])), options),
        answer=answer,
        answer_type="multiple_choice" if options else infer_answer_type(answer),
        images=image_list(row.get("decoded_image") or row.get("image")),
        choices=options,
        family=str(row.get("subject") or ""),
        metadata={"level": row.get("level")},
    )
