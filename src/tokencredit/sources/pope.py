"""POPE as lmms-lab/POPE publishes it (the copy lmms-eval and the awesome-perception-aware-rlvr fork
read): 9,000 yes/no questions "Is there a <object> in the image?" on 500 COCO val2014 images, 3,000
per negative-sampling subset. Config Full: Full/{random,popular,adversarial}-00000-of-00001.parquet;
config default: the same rows in data/test-0000{0,1,2}-of-00003.parquet. Fields: `id`, `question_id`
(numbered within its subset, so repeated across subsets), `question`, `answer` ("yes" / "no"),
`image_source` (the COCO file stem), `image` (an embedded {bytes, path} image), `category` (the
subset). Split `test` is every subset; `random`, `popular`, `adversarial` one each (config Full).

POPE's metrics are per subset: accuracy, precision, recall and F1 of "yes", and the yes ratio
(tokencredit.graders.pope_metrics).
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

SUBSETS = ("random", "popular", "adversarial")


@register(
    "pope",
    splits={
        "test": (tuple(f"Full/{s}-*.parquet" for s in SUBSETS), "data/test-*.parquet"),
        **{s: (f"Full/{s}-*.parquet",) for s in SUBSETS},
    },
    required=("question_id", "question", "answer", "image", "category"),
)
def convert(row: dict, ref: RowRef) -> Item:
    answer, category = str(row["answer"]).strip().lower(), str(row["category"])
    if answer not in ("yes", "no"):
        raise BadRow(f"answer {row['answer']!r} is neither yes nor no")
    if category not in SUBSETS:
        raise BadRow(f"category {category!r} is not a POPE subset ({', '.join(SUBSETS)})")
    return Item(
        id=f"{category}-{row['question_id']}",
        question=str(row["question"]).strip(),
        answer=answer,
        answer_type="yes_no",
        images=image_list(row["image"]),
        family=category,
        metadata={"category": category, "label": answer, "image_source": row.get("image_source")},
    )
