"""MathVerse as AI4Math/MathVerse publishes it: testmini.parquet (788 problems x 5 visual versions)
and testmini_text-only.parquet.

Fields: `sample_index`, `problem_index`, `problem_version` (Text Dominant, Text Lite, Vision
Intensive, Vision Dominant, Vision Only, Text Only), `question` (multiple-choice options inside, as
"Choices:\\nA:..."), `image`, `answer`, `question_type` (multi-choice / free-form), `metadata`,
`query_wo`. The vision-only subset is `where: {problem_version: [Vision Only]}`; its question is
in the image, so the text is `query_wo` when `question` is empty.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import infer_answer_type
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item


@register(
    "mathverse",
    splits={"testmini": ("testmini.parquet",), "testmini_text_only": ("testmini_text-only.parquet", "testmini_text_only.parquet")},
    required=("sample_index", "problem_version", "question", "answer", "question_type"),
)
def convert(row: dict, ref: RowRef) -> Item:
    question = str(row["question"]).strip() or str(row.get("query_wo") or "")
    answer = str(row["answer"]).strip()
    if row["question_type"] == "multi-choice":
        answer_type, choices = "multiple_choice", choices_in_text(question)
    elif row["question_type"] == "free-form":
        answer_type, choices = infer_answer_type(answer), ()
        if answer_type == "multiple_choice":  # a bare capital in a free-form answer is a value, not an option
            answer_type = "expression"
    else:
        raise BadRow(f"unknown question_type {row['question_type']!r} (known: multi-choice, free-form)")
    return Item(
        id=str(row["sample_index"]),
        question=question,
        answer=answer,
        answer_type=answer_type,
        images=image_list(row.get("image")),
        choices=choices,
        family=str(row["problem_version"]),
        metadata={"problem_index": row.get("problem_index"), "problem_version": row["problem_version"], **(row.get("metadata") or {})},
    )
