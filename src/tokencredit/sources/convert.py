"""Convert one published split of a local dataset into rows of the one schema, with its images."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tokencredit.rewards import DEFAULT_ANSWER_FORMAT
from tokencredit.sources import Adapter
from tokencredit.sources.answers import option_letters
from tokencredit.sources.images import image_bytes, save_image
from tokencredit.sources.records import Layout, RowRef, lookup, published_files, read_rows
from tokencredit.sources.schema import ANSWER_TYPES, COLUMNS, BadRow, BrokenInRelease, Item, SourceError

log = logging.getLogger(__name__)


def convert(
    adapter: Adapter,
    root: Path,
    split: str,
    image_dir: Path,
    image_prefix: str,
    template: str = "{question}",
    where: Mapping[str, Sequence[str]] | None = None,
    limit: int | None = None,
    on_bad_row: str = "error",
    answer_format: str = DEFAULT_ANSWER_FORMAT,
) -> tuple[pd.DataFrame, list[str]]:
    """The rows of published `split` under `root` as a frame of COLUMNS (and the adapter's extra columns), and the rows skipped
    ("<file> row <n>: <reason>").

    Rows keep their published order; `where` keeps rows whose field has a listed value, `limit`
    the first N kept. Images are written to `image_dir` and named `image_prefix/<file>` in the
    frame; `template` turns each question into the user text, which asks for `answer_format`. A row the release publishes broken
    (BrokenInRelease: an empty question or answer) is always skipped and logged. Any other
    malformed row raises SourceError naming its file, row and fault, or with on_bad_row="skip" is
    logged and skipped too.
    """
    if split not in adapter.splits:
        raise SourceError(f"dataset adapter {adapter.name!r} has no published split {split!r} (published: {list(adapter.splits)})")
    Path(image_dir).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    first_seen: dict[str, RowRef] = {}
    skipped: list[str] = []
    for ref, row in _published_rows(root, adapter.splits[split], split):
        try:
            if not isinstance(row, dict):
                raise BadRow(f"is a {type(row).__name__}, not an object")
            if not _kept(row, where or {}):
                continue
            item = _item(adapter, row, ref)
            if item.id in first_seen:
                raise BadRow(f"id {item.id!r} repeats that of {first_seen[item.id]}")
            names = [save_image(image_bytes(v, root), image_dir, f"{ref.position:06d}-{i}") for i, v in enumerate(item.images)]
        except BadRow as err:
            if on_bad_row == "error" and not isinstance(err, BrokenInRelease):
                raise SourceError(f"{ref} ({adapter.name}/{split}): {err} (on_bad_row: skip leaves such rows out)") from None
            log.warning("skipped %s (%s/%s): %s", ref, adapter.name, split, err)
            skipped.append(f"{ref}: {err}")
            continue
        first_seen[item.id] = ref
        record = _record(adapter.name, split, item, [f"{image_prefix}/{name}" for name in names], template, answer_format)
        rows.append({**record, "claims": json.dumps([list(c) for c in item.claims])} if "claims" in adapter.columns else record)
        if limit is not None and len(rows) == limit:
            break
    if not rows:
        raise SourceError(f"{adapter.name}/{split} under {root}: no rows left ({len(skipped)} skipped as malformed)")
    if skipped:
        log.warning("%s/%s: skipped %d malformed rows, kept %d", adapter.name, split, len(skipped), len(rows))
    return pd.DataFrame(rows, columns=[*COLUMNS, *adapter.columns]), skipped


def _published_rows(root: Path, layouts: Sequence[Layout], split: str) -> Iterator[tuple[RowRef, Any]]:
    position = 0
    for path in published_files(root, layouts):
        for number, row in enumerate(read_rows(path)):
            yield RowRef(path, number, split, position), row
            position += 1


def _kept(row: dict, where: Mapping[str, Sequence[str]]) -> bool:
    return all(str(lookup(row, field)) in values for field, values in where.items())


def _item(adapter: Adapter, row: dict, ref: RowRef) -> Item:
    for name in adapter.required:
        if name not in row:
            raise BadRow(f"missing field {name!r}")
        if row[name] is None:
            raise BadRow(f"field {name!r} is empty")
    item = adapter.convert(row, ref)
    _check(item)
    return item


def _check(item: Item) -> None:
    if item.answer_type not in ANSWER_TYPES:
        raise BadRow(f"unknown answer type {item.answer_type!r} (known: {', '.join(ANSWER_TYPES)})")
    if not item.question.strip():
        raise BrokenInRelease("empty question")
    if not item.answer.strip():
        raise BrokenInRelease("empty answer")
    if item.answer_type == "multiple_choice":
        letters = option_letters(item.answer)
        if letters is None:
            raise BadRow(f"multiple-choice answer {item.answer!r} names no option letter")
        if item.choices and any(ord(x) - ord("A") >= len(item.choices) for x in letters):
            raise BadRow(f"answer {item.answer!r} is not among its {len(item.choices)} choices")


def _record(source: str, split: str, item: Item, images: list[str], template: str, answer_format: str) -> dict[str, Any]:
    return {
        "id": item.id,
        "split": split,
        "source": source,
        "family": item.family,
        "question": template.replace("{question}", item.question),
        "image": images[0] if images else "",
        "images": images,
        "answer": item.answer,
        "answer_type": item.answer_type,
        "choices": list(item.choices),
        "metadata": json.dumps(item.metadata, sort_keys=True, default=str),
        "answer_format": answer_format,
    }
