"""HallusionBench as lmms-lab/HallusionBench publishes it: data/image-*.parquet (951 questions with a
figure) and data/non_image-*.parquet (178 without). Fields: `category` (VD / VS), `subcategory`,
`visual_input` (0: no figure, 1: original, 2: edited), `set_id`, `figure_id`, `question_id`,
`question`, `gt_answer` (1 yes / 0 no), `gt_answer_details`, `filename`, `image`. The ids keep what
the release's figure- and pair-level accuracies group by (tokencredit.graders)."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

ANSWERS = {"1": "yes", "0": "no"}
GROUP_FIELDS = ("category", "subcategory", "set_id", "figure_id", "question_id")


@register(
    "hallusionbench",
    splits={"all": (("data/image-*.parquet", "data/non_image-*.parquet"),), "image": ("data/image-*.parquet",), "non_image": ("data/non_image-*.parquet",)},
    required=(*GROUP_FIELDS, "visual_input", "question", "gt_answer"),
)
def convert(row: dict, ref: RowRef) -> Item:
    gt = str(row["gt_answer"]).strip()
    if gt not in ANSWERS:
        raise BadRow(f"gt_answer {gt!r} is neither 1 (yes) nor 0 (no)")
    with_figure = str(row["visual_input"]) != "0"
    if with_figure and not row.get("image"):
        raise BadRow(f"visual_input {row['visual_input']!r} promises a figure, but field 'image' is empty")
    keys = {name: str(row[name]) for name in GROUP_FIELDS}
    return Item(
        id="_".join(keys.values()),
        question=str(row["question"]),
        answer=ANSWERS[gt],
        answer_type="yes_no",
        images=image_list(row["image"]) if with_figure else (),
        family=keys["category"],
        metadata={**keys, "visual_input": str(row["visual_input"]), "filename": row.get("filename")},
    )
