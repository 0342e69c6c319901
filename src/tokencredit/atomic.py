"""Atomic outputs: write to a temporary name beside the target, then rename.

A killed job never leaves a half-written file or directory under the final name, so neither
Snakemake nor a rerun can mistake it for a finished output, and an existing output is only
replaced once its successor is complete.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_leftovers(target: Path) -> None:
    """Temporaries of an earlier writer of `target` that was killed (SIGKILL skips cleanup).

    Snakemake runs one job per output, so no other live writer can own them; for a model
    they can be gigabytes.
    """
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    With `directory=True` the temporary path is a fresh directory and an existing `target`
    directory is replaced as a whole. On error the temporary path is removed and `target` is
    left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create owner-only temporaries; outputs get the usual permissions (umask).
    tmp.chmod((0o777 if directory else 0o666) & ~_umask())
    try:
        yield tmp
        if directory and target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(target: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
