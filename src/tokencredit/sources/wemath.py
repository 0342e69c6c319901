"""We-Math testmini as its releases publish it (1740 rows: 525 problems split into sub-questions).

Layouts, the first present is read: the Hub snapshot of We-Math/We-Math holds both
data/testmini-*.parquet (`image_path` an embedded {bytes, path} image) and testmini.json (with
its images in testmini.zip), so only the parquet file is read there; the GitHub release's data/
folder holds testmini.json with `image_path` a file under it ("2steps/image/1-1.png").

Fields: `ID` ("2steps_1": one problem, shared by its sub-questions), `key` (which part:
"2steps_1", "2steps_2", "2steps_multi", "3steps_1" ... "3steps_multi"), `split`, `knowledge
concept`, `question`, `option` ("A. 200.96;B. 3215.36;...; E. No correct answer"), `answer` (a
letter), `image_path`, `question number`. A row's id is `ID` and its part ("2steps_1-multi");
the metadata keeps both for the four-dimensional metrics (tokencredit.graders.wemath_metrics).
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text, with_choices
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item


@register(
    "wemath",
    splits={"testmini": ("data/testmini-*.parquet", "testmini.json")},
    required=("ID", "key", "question", "option", "answer", "image_path"),
)
def convert(row: dict, ref: RowRef) -> Item:
    choices = choices_in_text(str(row["option"]))
    question = with_choices(str(row["question"]), choices) if choices else f"{row['question']}\n{row['option']}"
    key = str(row["key"])
    steps, _, part = key.partition("_")
    return Item(
        id=f"{row['ID']}-{part}",
        question=question,
        answer=str(row["answer"]).strip(),
        answer_type="multiple_choice",
        images=image_list(row["image_path"]),
        choices=choices,
        family=steps,
        metadata={"ID": str(row["ID"]), "key": key, "knowledge concept": row.get("knowledge concept"), "question number": row.get("question number")},
    )
