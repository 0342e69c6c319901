"""LogicVista (448 questions) as its two releases publish it; the first layout present is read.

- The Hub copy the evaluation frameworks read (lscpku/LogicVista, split `test`, read by lmms-eval's
  logicvista task): data/test-*.parquet with `id`, `image` (an embedded {bytes, path} image),
  `question`, `answer`, `reasoning`, `skill`, `broad_capability`, `specific_capability`,
  `imagesource`, `sourcelink`, `liscenced`.
- The GitHub release (Yijia-Xiao/LogicVista): data/dataset.json, an object of rows keyed by id
  ("v1_0") with `imagename` (under data/images/) and the same fields, `skill` etc. as lists.

Answers are option letters ("C", "A, C", up to "G") or, once, a number; the options are in the
question text or only in the image. Row v1_382 of the GitHub release has an empty question and
answer: it is skipped as broken in the release.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item
from tokencredit.sources.records import KEY, RowRef
from tokencredit.sources.schema import BadRow, Item


def _first(value: object) -> str:
    """The first of a list field (the GitHub release), or the field itself."""
    if isinstance(value, (list, tuple)):
        return str(value[0]) if value else ""
    return str(value or "")


@register("logicvista", splits={"test": ("data/test-*.parquet", "data/dataset.json")}, required=("question", "answer"))
def convert(row: dict, ref: RowRef) -> Item:
    if "image" in row:
        image = row["image"]
    elif row.get("imagename"):
        image = f"data/images/{row['imagename']}"
    else:
        raise BadRow("neither field 'image' nor 'imagename'")
    return inferred_item(
        str(row.get("id") or row.get(KEY) or ref.position),
        str(row["question"]).strip(),
        str(row["answer"]).strip(),
        image,
        _first(row.get("skill")),
        {name: row.get(name) for name in ("skill", "broad_capability", "specific_capability")},
    )
