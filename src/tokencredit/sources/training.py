"""Real training sets: prepare_data's train and validation splits from a local published copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tokencredit.atomic import atomic_path, write_parquet
from tokencredit.params import DataParams, PromptParams
from tokencredit.sources import get_adapter
from tokencredit.sources.convert import convert
from tokencredit.sources.schema import SourceError

REAL_SPLITS = ("train", "validation")


def write_training_splits(data: DataParams, prompt: PromptParams, data_dir: Path) -> list[str]:
    """Write data_dir/{train,validation}.parquet (+ images/<published split>/) from data.source at
    data.path; returns the rows skipped, each with its reason.

    The validation split is data.validation's published split when it names one, else the
    release's own validation split when it has one; otherwise n_validation train rows, chosen with
    data.seed, are held out (their images stay under images/train/).
    """
    adapter = get_adapter(data.source)
    own = [s for s in REAL_SPLITS if s in adapter.splits and not (s == "validation" and data.validation)]
    reads = [(split, adapter, data.path, split, None, data.limit if split == "train" else None, data.on_bad_row) for split in own]
    if data.validation is not None:
        v, v_adapter = data.validation, get_adapter(data.validation.source)
        reads.append(("validation", v_adapter, v.path, v.split or v_adapter.default_split, v.where, v.limit, v.on_bad_row))
    frames: dict[str, pd.DataFrame] = {}
    skipped: list[str] = []
    for split, source, path, published, where, limit, on_bad_row in reads:
        with atomic_path(Path(data_dir) / "images" / split, directory=True) as tmp:
            frames[split], n = convert(
                source, Path(path), published, tmp, f"images/{split}", prompt.template, where, limit, on_bad_row, prompt.answer_format,
            )  # fmt: skip
        skipped += n
    if "validation" not in frames:
        frames["train"], frames["validation"] = hold_out(frames["train"], data.n_validation, data.seed)
    for split, frame in frames.items():
        write_parquet(Path(data_dir) / f"{split}.parquet", frame.assign(split=split))
    return skipped


def hold_out(frame: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rest, n rows chosen with `seed`), both in their original order."""
    if n >= len(frame):
        raise SourceError(f"cannot hold out n_validation={n} rows from a train split of {len(frame)} rows")
    held = np.zeros(len(frame), dtype=bool)
    held[np.random.default_rng(seed).choice(len(frame), size=n, replace=False)] = True
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
