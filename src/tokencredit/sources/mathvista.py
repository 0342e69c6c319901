"""MathVista as AI4Math/MathVista publishes it: data/{testmini,test}-*.parquet.

Fields: `pid`, `question`, `query` (the question with its hint and lettered choices), `image` (a
path) and `decoded_image`, `choices` (list, or null when free-form), `answer` (the option TEXT of
a multiple-choice item), `question_type` (multi_choice / free_form), `answer_type` (integer /
float / text / list), `unit`, `precision`, `metadata` (category, task, skills...).
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import letter_of, with_choices
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

FREE_FORM_TYPES = {"integer": "integer", "float": "number", "text": "free_form", "list": "free_form"}


@register(
    "mathvista",
    splits={split: (f"data/{split}-*.parquet",) for split in ("testmini", "test")},
    required=("pid", "question", "answer", "question_type", "answer_type"),
)
def convert(row: dict, ref: RowRef) -> Item:
    choices = tuple(str(c) for c in row.get("choices") or ())
    if row["question_type"] == "multi_choice":
        answer, answer_type = letter_of(str(row["answer"]), choices), "multiple_choice"
    elif row["question_type"] == "free_form":
        if row["answer_type"] not in FREE_FORM_TYPES:
            raise BadRow(f"unknown answer_type {row['answer_type']!r} (known: {', '.join(FREE_FORM_TYPES)})")
        answer, answer_type = str(row["answer"]), FREE_FORM_TYPES[row["answer_type"]]
    else:
        raise BadRow(f"unknown question_type {row['question_type']!r} (known: multi_choice, free_form)")
    metadata = dict(row.get("metadata") or {})
    return Item(
        id=str(row["pid"]),
        question=str(row.get("query") or with_choices(str(row["question"]), choices)),
        answer=answer,
        answer_type=answer_type,
        images=image_list(row.get("decoded_image") or row.get("image")),
        choices=choices,
        family=str(metadata.get("task") or ""),
        metadata={"unit": row.get("unit"), "precision": row.get("precision"), **metadata},
    )
