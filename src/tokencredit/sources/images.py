"""Published images: read the bytes of any published form, check they decode, write them unchanged."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from tokencredit.sources.schema import BadRow

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}


def image_list(value: Any) -> tuple[Any, ...]:
    """A published image field as a tuple of images: a list of them, one image, or none (None, or
    the empty string MathVerse's text-only split stores in its string-typed `image` column)."""
    if value is None or value == "":
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def image_bytes(value: Any, root: Path) -> bytes:
    """Bytes of one published image: a {bytes, path} struct (Hugging Face's Image feature, whose bytes
    may be empty when the file sits beside the data), raw bytes, or a path relative to the release."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        path = root / value
        if not path.is_file():
            raise BadRow(f"image file {path} does not exist")
        return path.read_bytes()
    raise BadRow(f"image value holds neither bytes nor a path: {str(value)[:80]!r}")


def save_image(data: bytes, out_dir: Path, stem: str) -> str:
    """Check that `data` decodes fully, write it as out_dir/stem.<its format>; return the file name."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind = image.format
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadRow(f"image does not decode: {err}") from None
    name = f"{stem}.{EXTENSIONS.get(kind, str(kind).lower())}"
    (out_dir / name).write_bytes(data)
    return name
