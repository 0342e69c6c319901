"""DynaMath as DynaMath/DynaMath_Sample publishes it on the Hub: 501 seed questions, each in 10
variants, one split per variant: sample_variant1..10, files data/sample{n}-*.parquet (named
data/sample_variant{n}-*.parquet in some copies). Split `all` reads the 10 variants together,
which the official worst-case accuracy needs (tokencredit.graders.dynamath_metrics).

Fields: `id` (the seed question, the same in every variant), `question` (options inside for
multiple choice), `image` (a path) and `decoded_image` (an embedded {bytes, path} image),
`ground_truth`, `answer_type` (float / multiple choice / text), `subject`, `knowledge_level`.
A row's id is its seed id and variant ("12-v3"). Float answers are graded as the official scorer
(VLMEvalKit's DynaMath) does: correct within an absolute tolerance of 0.001.
"""

from __future__ import annotations

import re

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

ANSWER_TYPES = {"multiple choice": "multiple_choice", "float": "number", "text": "free_form"}
FLOAT_TOLERANCE = 0.001  # VLMEvalKit's DynaMath_auxeval: abs(prediction - answer) <= 0.001
VARIANTS = range(1, 11)
VARIANT_FILE = re.compile(r"sample(?:_variant)?(\d+)-")


def _layouts(variants: range) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(f"data/{name}{n}-*.parquet" for n in variants) for name in ("sample", "sample_variant"))


@register(
    "dynamath",
    splits={**{f"sample_variant{n}": _layouts(range(n, n + 1)) for n in VARIANTS}, "all": _layouts(VARIANTS)},
    required=("id", "question", "ground_truth", "answer_type"),
)
def convert(row: dict, ref: RowRef) -> Item:
    if row["answer_type"] not in ANSWER_TYPES:
        raise BadRow(f"unknown answer_type {row['answer_type']!r} (known: {', '.join(ANSWER_TYPES)})")
    variant = VARIANT_FILE.search(ref.file.name)
    if variant is None:
        raise BadRow(f"file name {ref.file.name!r} names no variant (sample<n>-*.parquet)")
    answer_type = ANSWER_TYPES[row["answer_type"]]
    question = str(row["question"])
    grading = {"tolerance": FLOAT_TOLERANCE} if answer_type == "number" else {}
    return Item(
        id=f"{row['id']}-v{variant[1]}",
        question=question,
        answer=str(row["ground_truth"]).strip(),
        answer_type=answer_type,
        images=image_list(row.get("decoded_image") or row.get("image")),
        choices=choices_in_text(question) if answer_type == "multiple_choice" else (),
        family=str(row.get("subject") or ""),
        metadata={"seed": str(row["id"]), "variant": int(variant[1]), "knowledge_level": row.get("knowledge_level"), **grading},
    )
