"""Benchmarks: prepare_benchmark's converted copy, and how the evaluate step reads it back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tokencredit.atomic import atomic_path, write_parquet
from tokencredit.dataset import load_split
from tokencredit.params import BenchmarkSpec, PromptParams
from tokencredit.sources import get_adapter
from tokencredit.sources.convert import convert
from tokencredit.sources.schema import COLUMNS

SKIPPED = "skipped_rows"  # the frame attribute (kept in the parquet file) listing the rows left out


def write_benchmark(name: str, spec: BenchmarkSpec, prompt: PromptParams, out_dir: Path) -> list[str]:
    """Write out_dir/{name}.parquet and out_dir/images/{name}/; returns the rows skipped, each with
    its reason, which the parquet file also keeps (frame.attrs) for grading and the report."""
    adapter = get_adapter(spec.source)
    with atomic_path(Path(out_dir) / "images" / name, directory=True) as tmp:
        frame, skipped = convert(
            adapter, Path(spec.path), spec.split or adapter.default_split, tmp, f"images/{name}",
            prompt.template, spec.where, spec.limit, spec.on_bad_row, prompt.answer_format,
        )  # fmt: skip
    frame = frame.assign(split=name)
    frame.attrs[SKIPPED] = skipped
    write_parquet(Path(out_dir) / f"{name}.parquet", frame)
    return skipped


def load_benchmark(data_dir: Path, name: str) -> pd.DataFrame:
    """Read data_dir/{name}.parquet with load_split's checks, over the full schema's columns."""
    frame = load_split(data_dir, name, required=COLUMNS)
    frame["images"] = frame["images"].map(list)
    frame["choices"] = frame["choices"].map(list)
    return frame
