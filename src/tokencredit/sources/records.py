"""Rows of published files: parquet (read in batches), JSON (a list, or an object of objects) and JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tokencredit.sources.schema import BadRow, SourceError

PARQUET_BATCH = 64  # rows per batch: embedded images stay out of memory until their row is read
KEY = "_key"  # where a row of a JSON object of objects keeps its key (e.g. LogicVista's "v1_0")


@dataclass(frozen=True)
class RowRef:
    """Where a row comes from: its file and row number there, and its position in the whole split."""

    file: Path
    row: int
    split: str
    position: int

    def __str__(self) -> str:
        return f"{self.file} row {self.row}"


Layout = tuple[str, ...]  # globs under the release directory whose files together hold one split


def published_files(root: Path, layouts: Sequence[Layout]) -> list[Path]:
    """The files of the first of `layouts` that matches anything under `root`, sorted.

    A split may be published in several layouts (a Hub snapshot holds both the JSON release and
    its parquet conversion): only the first that is present is read, so no row is read twice.
    An error names the folder and every pattern looked for.
    """
    for layout in layouts:
        files = sorted({path for pattern in layout for path in root.glob(pattern) if path.is_file()})
        if files:
            return files
    looked_for = " or ".join(str(list(layout)) for layout in layouts)
    raise SourceError(f"{root} matches no known layout of this split: no file matching {looked_for}")


def read_rows(path: Path) -> Iterator[Any]:
    """The rows of one published file, in order (a row that is not an object is yielded as is)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path)
    elif suffix == ".jsonl":
        for number, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise SourceError(f"{path} line {number + 1} is not valid JSON: {err}") from None
    elif suffix == ".json":
        yield from _json_rows(path)
    else:
        raise SourceError(f"{path}: unsupported file type {suffix!r} (parquet, json or jsonl)")


def _parquet_rows(path: Path) -> Iterator[dict]:
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH)
        for batch in batches:
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path} is not a readable parquet file: {err}") from None


def _json_rows(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SourceError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        return [{**row, KEY: key} for key, row in data.items()]
    raise SourceError(f"{path} must hold a list of rows or an object of rows, got {type(data).__name__}")


def lookup(row: dict, name: str) -> Any:
    """A field of a row; dotted names reach into nested objects (metadata.subject)."""
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadRow(f"missing field {name!r}")
        value = value[part]
    return value
