"""MathVerse as AI4Math/MathVerse publishes it on the Hub: testmini.parquet (788 problems x 5
visual versions, `image` an embedded {bytes, path} image) and testmini_text_only.parquet (named
testmini_text-only.parquet in early snapshots), whose string-typed `image` column holds "". The
snapshot also holds the same rows as JSON (testmini.json + images.zip); only the parquet is read.

Fields: `sample_index`, `problem_index`, `problem_version` (Text Dominant, Text Lite, Vision
Intensive, Vision Dominant, Vision Only, Text Only), `question` (multiple-choice options inside, as
"Choices:\\nA:..."), `image`, `answer`, `question_type` (multi-choice / free-form), `metadata`,
`query_wo`. The vision-only subset is `where: {problem_version: [Vision Only]}`; its question is
in the image, so the text is `query_wo` when `question` is empty. A few multi-choice rows give
the option's text or a value rather than a letter: the text is turned into its letter, a value is
graded as a free-form answer.

The official scorer extracts and judges answers with GPT-4; our grading is rule-based.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import infer_answer_type, option_letters
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text, letter
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item


@register(
    "mathverse",
    splits={"testmini": ("testmini.parquet",), "testmini_text_only": ("testmini_text_only.parquet", "testmini_text-only.parquet")},
    required=("sample_index", "problem_version", "question", "answer", "question_type"),
)
def convert(row: dict, ref: RowRef) -> Item:
    question = str(row["question"]).strip() or str(row.get("query_wo") or "")
    answer = str(row["answer"]).strip()
    if row["question_type"] not in ("multi-choice", "free-form"):
        raise BadRow(f"unknown question_type {row['question_type']!r} (known: multi-choice, free-form)")
    choices = choices_in_text(question) if row["question_type"] == "multi-choice" else ()
    if choices and option_letters(answer) is None:
        answer = next((letter(i) for i, c in enumerate(choices) if c.strip() == answer), answer)
    if row["question_type"] == "multi-choice" and option_letters(answer) is not None:
        answer_type = "multiple_choice"
    else:  # free-form, or a multi-choice answer that names no option: graded as a value
        answer_type = infer_answer_type(answer)
        if answer_type == "multiple_choice":  # a bare capital in a free-form answer is a value, not an option
            answer_type = "expression"
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
