"""Model families: what differs between Qwen2.5-VL, Qwen3-VL, Qwen3.5 and InternVL3, behind one interface.

One module per family defines a `Family` subclass and registers one instance of it; everything
else asks `family_named(model.family)` or `family_of(config)` and never tests a model type itself.
A new family is one more module here, imported at the bottom of this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

AUTO = "auto"


@dataclass(frozen=True)
class PatchLayout:
    """How a batch's pixel_values hold its images: what pixel counterfactuals perturb.

    Qwen2-VL style (`grid_key="image_grid_thw"`): each row is one `patch_size`² patch,
    channel-major, repeated over `temporal_patch_size` frames, rows running over
    `merge_size`² blocks. Tiles (`grid_key=None`, InternVL): pixel_values is [tiles, C, H, W] and
    each tile is cut into `patch_size`² patches here.
    """

    patch_size: int
    merge_size: int = 2
    temporal_patch_size: int = 2
    channels: int = 3
    grid_key: str | None = "image_grid_thw"

    def patches(self, pixel_values: Tensor) -> Tensor:
        """[patches, C, pixels of one patch (x frames)]: one row per patch, as blackening draws them."""
        if self.grid_key is not None:
            return pixel_values.reshape(pixel_values.shape[0], self.channels, -1)
        n, c, h, w = pixel_values.shape
        p = self.patch_size
        x = pixel_values.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(-1, c, p * p)

    def from_patches(self, patches: Tensor, like: Tensor) -> Tensor:
        """Inverse of `patches`, in the shape of `like` (the pixel_values they came from)."""
        if self.grid_key is not None:
            return patches.reshape(like.shape)
        n, c, h, w = like.shape
        p = self.patch_size
        x = patches.reshape(n, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(like.shape)

    def to_frames(self, pixel_values: Tensor, grid: Tensor | None) -> list[Tensor]:
        """Each image as frames [T, C, H, W] (Qwen: T = t x temporal_patch_size; tiles: each tile alone)."""
        if self.grid_key is None:
            return list(pixel_values.unsqueeze(1))
        rows = pixel_values.split(grid.prod(-1).tolist())
        return [self._unpatchify(r, g) for r, g in zip(rows, grid.tolist())]

    def to_rows(self, frames: list[Tensor], grid: Tensor | None) -> Tensor:
        """Inverse of `to_frames`."""
        if self.grid_key is None:
            return torch.cat(frames)
        return torch.cat([self._patchify(f, g) for f, g in zip(frames, grid.tolist())])

    def _unpatchify(self, rows: Tensor, grid_thw: list[int]) -> Tensor:
        t, h, w = grid_thw
        m, p = self.merge_size, self.patch_size
        x = rows.reshape(t, h // m, w // m, m, m, -1, self.temporal_patch_size, p, p)
        x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8)  # (t, tp, C, h/m, m, p, w/m, m, p)
        return x.reshape(t * self.temporal_patch_size, -1, h * p, w * p)

    def _patchify(self, frames: Tensor, grid_thw: list[int]) -> Tensor:
        t, h, w = grid_thw
        m, p = self.merge_size, self.patch_size
        x = frames.reshape(t, self.temporal_patch_size, -1, h // m, m, p, w // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return x.reshape(t * h * w, -1)


class Family:
    """One model family's adapter; subclasses fill in the class attributes and the methods."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values it serves
    decoder_layers: ClassVar[tuple[str, ...]]  # class names FSDP wraps (text decoder)
    vision_blocks: ClassVar[tuple[str, ...]]  # class names FSDP wraps (vision tower)
    special_tokens: ClassVar[tuple[str, ...]]  # the tiny tokenizer's special tokens, in the family's order
    extra_special_tokens: ClassVar[dict[str, str]] = {}  # tokenizer attributes the processor reads (e.g. InternVL's image tokens)
    image_placeholder: ClassVar[str]  # what the chat template writes for an image part

    def tiny_config(self, tokenizer: Any, model_params: Any) -> Any:
        """The config of a tiny random model of this family (no download)."""
        raise NotImplementedError

    def tiny_model(self, config: Any) -> Any:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_config(config)

    def processor(self, tokenizer: Any, model_params: Any) -> Any:
        """An image-only processor (no video processor: that needs torchvision) for the tiny model."""
        raise NotImplementedError

    def load_processor(self, path: Any, model_params: Any | None) -> Any:
        """The image-only processor of a checkpoint; `model_params` (when given) sets the pixel bounds."""
        raise NotImplementedError

    def image_token_id(self, config: Any) -> int:
        """The placeholder token the image embeddings replace."""
        return config.image_token_id

    def blocked_token_ids(self, config: Any) -> list[int]:
        """Image/video placeholders: sampled inside a completion, the model would read them as image slots."""
        raise NotImplementedError

    def vision_tower(self, model: Any) -> torch.nn.Module | None:
        """The vision encoder (under a peft wrapper too), or None."""
        raise NotImplementedError

    def patch_layout(self, processor: Any) -> PatchLayout:
        raise NotImplementedError

    def image_offsets(self, config: Any, batch: dict[str, Any]) -> tuple[list[int], list[int]]:
        """Images and pixel_values rows before each response (B + 1 cumulative counts), from its image tokens."""
        raise NotImplementedError

    def encode_repeated_images_once(self, model: Any) -> None:
        """Hook the vision tower so that a batch's repeated images are encoded once (idempotent)."""
        raise NotImplementedError


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def family_named(name: str, config: Any | None = None) -> Family:
    """The family params name (`model.family`); "auto": the one serving `config.model_type` (Qwen2.5-VL without a config)."""
    if name == AUTO:
        return family_of(config) if config is not None else FAMILIES["qwen2_5_vl"]
    if name in UNAVAILABLE:
        raise ValueError(f"model.family: {name!r} needs what the installed transformers lacks ({UNAVAILABLE[name]})")
    if name not in FAMILIES:
        raise ValueError(f"model.family: unknown family {name!r}; families are {[AUTO, *FAMILIES]}")
    family = FAMILIES[name]
    if config is not None and config.model_type not in family.model_types:
        raise ValueError(f"model.family is {name!r}, but the checkpoint's model type is {config.model_type!r}; set model.family: auto")
    return family


def family_of(config: Any) -> Family:
    """The family serving a checkpoint's config (by its model_type)."""
    for family in FAMILIES.values():
        if config.model_type in family.model_types:
            return family
    served = sorted(t for f in FAMILIES.values() for t in f.model_types)
    missing = f" (not importable here: {UNAVAILABLE})" if UNAVAILABLE else ""
    raise ValueError(f"model type {config.model_type!r} belongs to no model family; families serve {served}{missing}")


# Importing a family's module registers it. A family whose classes the installed transformers lacks
# (an older release, as on a GPU machine that cannot install) stays unregistered and says why when named.
UNAVAILABLE: dict[str, str] = {}
for _module in ("qwen2_5_vl", "qwen3_vl", "qwen3_5", "internvl"):
    try:
        importlib.import_module(f"tokencredit.families.{_module}")
    except ImportError as err:
        UNAVAILABLE[_module] = f"{type(err).__name__}: {err}"
