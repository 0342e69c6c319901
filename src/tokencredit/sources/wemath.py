"""We-Math testmini as its release publishes it: testmini.json (image_path: a file under the
release) or data/testmini-*.parquet (image_path: an embedded image). Fields: `ID`, `split`,
`knowledge concept`, `question`, `option` ("A. 200.96;B. 3215.36;...; E. No correct answer"),
`answer` (a letter), `image_path`, `key` ("2steps_1", ...), `question number`."""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.images import image_list
from tokencredit.sources.questions import choices_in_text, with_choices
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item


@register(
    "wemath",
    splits={"testmini": ("testmini.json", "data/testmini-*.parquet")},
    required=("ID", "question", "option", "answer", "image_path"),
)
def convert(row: dict, ref: RowRef) -> Item:
    choices = choices_in_text(str(row["option"]))
    question = with_choices(str(row["question"]), choices) if choices else f"{row['question']}\n{row['option']}"
    key = str(row.get("key") or "")
    return Item(
        id=str(row["ID"]),
        question=question,
        answer=str(row["answer"]).strip(),
        answer_type="multiple_choice",
        images=image_list(row["image_path"]),
        choices=choices,
        family=key.split("_")[0],
        metadata={"knowledge concept": row.get("knowledge concept"), "key": key, "question number": row.get("question number")},
    )
