"""Load and check one split (synthetic or converted from a real dataset); build its chat prompt."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

# What training and evaluation read; synthetic splits also carry target/role_spans (SFT checks those).
REQUIRED = ("id", "family", "question", "image", "answer", "answer_type")


def load_split(data_dir: Path, split: str, required: tuple[str, ...] = REQUIRED) -> pd.DataFrame:
    """Read data_dir/{split}.parquet; check its columns, that it has rows, and that every image exists."""
    path = Path(data_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    frame = pd.read_parquet(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks required column(s) {missing}")
    if frame.empty:
        raise ValueError(f"{path} has no rows: split {split!r} is empty")
    # Real datasets list every image of a row in `images` ("" `image` for a text-only row).
    images = frame["images"] if "images" in frame else frame["image"].map(lambda rel: [rel])
    for row_id, rels in zip(frame["id"], images):
        for rel in rels:
            if not (Path(data_dir) / rel).is_file():
                raise ValueError(f"{path}: image {Path(data_dir) / rel} of row id {row_id!r} does not exist")
    return frame


def load_image(data_dir: Path, relpath: str) -> Image.Image:
    path = Path(data_dir) / relpath
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def load_images(frame: pd.DataFrame, data_dir: Path) -> list[Image.Image]:
    """The image of every row of a synthetic split."""
    return [load_image(data_dir, rel) for rel in frame["image"]]


def row_images(frame: pd.DataFrame, data_dir: Path) -> list[list[Image.Image] | None]:
    """Every image of each row (a real row may have several; None: a text-only row)."""
    rels = frame["images"] if "images" in frame else frame["image"].map(lambda rel: [rel])
    return [[load_image(data_dir, rel) for rel in row if rel] or None for row in rels]


def prompt_messages(question: str, n_images: int = 1) -> list[dict]:
    """TRL conversational prompt: one user turn with `n_images` image placeholders, then the question."""
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]
