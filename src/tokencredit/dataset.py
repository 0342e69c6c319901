"""Load and check one split (synthetic or converted from a real dataset); build its chat prompt.

Images are decoded on demand and, given the policy's processor, resized once to the size that
processor would give them (`fit_to_processor`), so every path (training, rollouts, scoring) hands it
the same pixels and it resizes nothing again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    for row_id, rels in zip(frame["id"], image_paths(frame)):
        for rel in rels:
            if not (Path(data_dir) / rel).is_file():
                raise ValueError(f"{path}: image {Path(data_dir) / rel} of row id {row_id!r} does not exist")
    return frame


def image_paths(frame: pd.DataFrame) -> list[list[str]]:
    """Every image of each row, relative to the data dir: real datasets list them in `images` (a
    text-only row has none and an "" `image`); synthetic splits have one `image`."""
    rels = frame["images"] if "images" in frame else frame["image"]
    return [[rel for rel in ([row] if isinstance(row, str) else list(row)) if rel] for row in rels]


def load_image(data_dir: Path, relpath: str, processor: Any = None) -> Image.Image:
    """The decoded image; with the policy's processor, already resized as it would resize it."""
    path = Path(data_dir) / relpath
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return image if processor is None else fit_to_processor(image, processor)


def fit_to_processor(image: Image.Image, processor: Any) -> Image.Image:
    """`image` resized as a Qwen2-VL-style processor resizes it: `smart_resize` to multiples of patch x
    merge within its pixel bounds, with its resampling filter (as its PIL backend does). The processor
    then leaves it as it is (same size), so its pixel_values are those of the full image. Another
    family's processor resizes by itself: the image is returned unchanged."""
    ip = processor.image_processor
    size = getattr(ip, "size", None)
    if not (getattr(ip, "do_resize", False) and hasattr(ip, "merge_size") and size and size.get("shortest_edge") and size.get("longest_edge")):
        return image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    factor, bounds = ip.patch_size * ip.merge_size, (size["shortest_edge"], size["longest_edge"])
    height, width = smart_resize(image.height, image.width, factor, *bounds)
    if smart_resize(height, width, factor, *bounds) != (height, width):
        # Bounds so tight (min_pixels near max_pixels) that the processor would resize its own output
        # again: it gets the full image, as without this function.
        return image
    resample = ip.resample if isinstance(ip.resample, int) else Image.Resampling.BICUBIC  # a torchvision mode: Qwen's bicubic
    return image.resize((width, height), resample=resample)


def load_images(frame: pd.DataFrame, data_dir: Path, processor: Any = None) -> list[Image.Image]:
    """The image of every row of a synthetic split."""
    return [load_image(data_dir, rel, processor) for rel in frame["image"]]


def row_images(frame: pd.DataFrame, data_dir: Path, processor: Any = None) -> list[list[Image.Image] | None]:
    """Every image of each row (a real row may have several; None: a text-only row)."""
    return [[load_image(data_dir, rel, processor) for rel in row] or None for row in image_paths(frame)]


def prompt_messages(question: str, n_images: int = 1) -> list[dict]:
    """TRL conversational prompt: one user turn with `n_images` image placeholders, then the question."""
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]
