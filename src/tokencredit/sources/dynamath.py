"""DynaMath as DynaMath/DynaMath_Sample publishes it: one split per variant, sample_variant1..10
(data/sample{n}-*.parquet), each 501 seed questions. Fields: `id`, `question` (options inside for
multiple choice), `image` (a path) and `decoded_image`, `ground_truth`, `answer_type` (float /
multiple choice / text), `subject`, `knowledge_level`."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

ANSWER_TYPES = {"multiple choice": "multiple_choice", "float": "number", "text": "free_form"}
VARIANTS = range(1, 11)


@register(
    "dynamath",
    splits={f"sample_variant{n}": (f"data/sample{n}-*.parquet", f"data/sample_variant{n}-*.parquet") for n in VARIANTS},
    required=("id", "question", "ground_truth", "answer_type"),
)
def convert(row: dict, ref: RowRef) -> Item:
    if row["answer_type"] not in ANSWER_TYPES:
        raise BadRow(f"unknown answer_type {row['answer_type']!r} (known: {', '.join(ANSWER_TYPES)})")
    answer_type = ANSWER_TYPES[row["answer_type"]]
    question = str(row["question"])
    return Item(
        id=str(row["id"]),
        question=question,
        answer=str(row["ground_truth"]).strip(),
        answer_type=answer_type,
        images=image_list(row.get("decoded_image") or row.get("image")),
        choices=choices_in_text(question) if answer_type == "multiple_choice" else (),
        family=str(row.get("subject") or ""),
        metadata={"knowledge_level": row.get("knowledge_level"), "variant": ref.split},
    )
