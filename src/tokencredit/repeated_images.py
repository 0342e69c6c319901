"""Encode each image once when a batch repeats it: GRPO's G completions of a prompt share its image.

TRL repeats every prompt, image included, G times in a row (its RepeatSampler), and so do the
rollout cache's sampled decodings and the score step's batches of a prompt's samples. The vision
towers of the model families have no dropout and treat every image (InternVL: every tile)
separately, so encoding a repeated image once and repeating the embeddings gives the same
tensors, and the same gradients: indexing sums the repeats' gradients, as G separate encodings
would. Measured on the embedded default: benchmarks/repeated_images.py (RESULTS.md); a real
checkpoint's images have hundreds of patches each, so there the tower's share of a forward, and
the saving, is larger (not yet measured on a GPU).

Installed with two public torch hooks on the family's vision tower (`Family.vision_tower`):
- grid towers (Qwen2-VL style, `visual(pixel_values, grid_thw)`): only consecutive repeats are
  merged: checking a neighbour is one `torch.equal` on the device, while finding repeats anywhere
  would hash every image. Every per-row output is repeated back: the merged tokens
  (`pooler_output`), the patch rows (`last_hidden_state`) and Qwen3-VL's `deepstack_features`
  (merged tokens of the tapped layers). A call that passes precomputed vision positions is left
  as it is.
- tile towers (InternVL, `vision_tower(pixel_values=[tiles, C, H, W])`): the tower does not know
  which tiles form an image, so identical tiles anywhere in the batch are merged, found by a
  fingerprint (one matrix-vector product) and confirmed with `torch.equal`.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import torch
from torch import Tensor

_HOOKS = "_tokencredit_repeated_images_hooks"  # the tower's attribute holding our hook handles


def vision_tower(model: Any) -> torch.nn.Module | None:
    """The vision encoder of a model of any family (under a peft wrapper too), or None."""
    from tokencredit.families import family_of

    return family_of(model.config).vision_tower(model)


def encode_repeated_images_once(model: Any) -> None:
    """Hook the model's vision tower so that repeated images are encoded once (idempotent)."""
    from tokencredit.families import family_of

    family_of(model.config).encode_repeated_images_once(model)


def encode_every_image(model: Any) -> None:
    """Undo encode_repeated_images_once: every image through the tower again (benchmarks compare the two)."""
    tower = vision_tower(model)
    if tower is not None and hasattr(tower, _HOOKS):
        for handle in getattr(tower, _HOOKS):
            handle.remove()
        delattr(tower, _HOOKS)


def hook_grid_tower(tower: torch.nn.Module | None) -> None:
    """Qwen2-VL-style tower `tower(pixel_values, grid_thw)`: consecutive identical images are encoded once."""
    if tower is None or hasattr(tower, _HOOKS):
        return
    # Per call in flight: run lengths, pixel rows and merged tokens of each distinct image (None: nothing merged).
    repeats: list[tuple[list[int], list[int], list[int]] | None] = []

    def before(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        pixel_values = args[0] if args else kwargs.get("hidden_states")
        grid = kwargs["grid_thw"] if "grid_thw" in kwargs else (args[1] if len(args) > 1 else None)
        # Precomputed positions or sequence lengths describe every image: leave such a call alone.
        precomputed = any(isinstance(v, Tensor) for k, v in kwargs.items() if k not in ("hidden_states", "grid_thw"))
        if grid is None or precomputed:
            repeats.append(None)
            return None
        rows = grid.prod(-1).tolist()
        blocks = pixel_values.split(rows)
        first, counts = _runs_of_repeats(blocks, grid)
        if len(first) == len(blocks):  # nothing repeats
            repeats.append(None)
            return None
        merge = module.spatial_merge_size**2
        repeats.append((counts, [rows[i] for i in first], [rows[i] // merge for i in first]))
        rest = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "grid_thw")}
        return (torch.cat([blocks[i] for i in first]),), {**rest, "grid_thw": grid[first]}

    def after(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        runs = repeats.pop()
        if runs is None:
            return output
        counts, rows, merged = runs
        output.pooler_output = _repeat_blocks(output.pooler_output, merged, counts)
        output.last_hidden_state = _repeat_blocks(output.last_hidden_state, rows, counts)
        if getattr(output, "deepstack_features", None) is not None:  # Qwen3-VL: merged tokens of tapped layers
            output.deepstack_features = [_repeat_blocks(f, merged, counts) for f in output.deepstack_features]
        return output

    _install(tower, before, after)


def hook_tile_tower(tower: torch.nn.Module | None) -> None:
    """InternVL-style tower `tower(pixel_values=[tiles, C, H, W])`: identical tiles are encoded once."""
    if tower is None or hasattr(tower, _HOOKS):
        return
    # Per call in flight: for each input tile, its row among the tiles encoded (None: nothing merged).
    repeats: list[Tensor | None] = []

    def before(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        pixel_values = args[0] if args else kwargs["pixel_values"]
        keep, index = _distinct_tiles(pixel_values)
        if len(keep) == len(pixel_values):
            repeats.append(None)
            return None
        repeats.append(torch.tensor(index, device=pixel_values.device))
        rest = {k: v for k, v in kwargs.items() if k != "pixel_values"}
        return (pixel_values[keep], *args[1:]), rest

    def after(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        index = repeats.pop()
        if index is None:
            return output
        for key, value in list(output.items()):  # every per-tile output: hidden states, pooled, per-layer tuples
            if isinstance(value, Tensor):
                output[key] = value[index]
            elif isinstance(value, tuple):
                output[key] = tuple(v if v is None else v[index] for v in value)
        return output

    _install(tower, before, after)


def _install(tower: torch.nn.Module, before: Any, after: Any) -> None:
    hooks = (tower.register_forward_pre_hook(before, with_kwargs=True), tower.register_forward_hook(after, with_kwargs=True))
    setattr(tower, _HOOKS, hooks)


def _distinct_tiles(tiles: Tensor) -> tuple[list[int], list[int]]:
    """(first tile of each distinct tile, each tile's position among those): equal fingerprints, then torch.equal."""
    flat = tiles.flatten(1)
    probe = torch.rand(flat.shape[1], generator=torch.Generator().manual_seed(0)).to(flat.device, torch.float32)
    seen: dict[float, int] = {}
    keep: list[int] = []
    index: list[int] = []
    for i, key in enumerate((flat.float() @ probe).tolist()):
        j = seen.get(key)
        if j is None or not torch.equal(flat[keep[j]], flat[i]):
            j = seen[key] = len(keep)
            keep.append(i)
        index.append(j)
    return keep, index


def _runs_of_repeats(blocks: tuple[Tensor, ...], grid: Tensor) -> tuple[list[int], list[int]]:
    """(first image of each run, run lengths) of consecutive identical images, given each image's pixel rows."""
    first, counts = [0], [1]
    for i in range(1, len(blocks)):
        j = first[-1]
        if torch.equal(grid[i], grid[j]) and torch.equal(blocks[i], blocks[j]):
            counts[-1] += 1
        else:
            first.append(i)
            counts.append(1)
    return first, counts


def _repeat_blocks(values: Tensor, sizes: list[int], counts: list[int]) -> Tensor:
    """Rows of `values`, in blocks of `sizes`, each block repeated `counts` times in place."""
    starts = [0, *accumulate(sizes[:-1])]
    index = torch.cat(
        [torch.arange(start, start + size, device=values.device).repeat(count) for start, size, count in zip(starts, sizes, counts)]
    )
    return values[index]
