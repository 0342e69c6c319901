"""Encode each image once when a batch repeats it: GRPO's G completions of a prompt share its image.

TRL repeats every prompt, image included, G times in a row (its RepeatSampler), and so do the
rollout cache's sampled decodings and the score step's batches of a prompt's samples. Qwen2-VL's
vision tower has no dropout and treats every image separately, so encoding a run of identical
images once and repeating the embeddings gives the same tensors, and the same gradients: indexing
sums the repeats' gradients, as G separate encodings would. Measured on the embedded default:
benchmarks/repeated_images.py (RESULTS.md); a real checkpoint's images have hundreds of patches
each, so there the tower's share of a forward, and the saving, is larger (not yet measured on a GPU).

Only consecutive repeats are merged: checking a neighbour is one `torch.equal` on the device,
while finding repeats anywhere would hash every image. Installed with two public torch hooks on the
vision tower (`model.model.visual`, Qwen2-VL's and Qwen2.5-VL's `visual(pixel_values, grid_thw)`);
a model without one is left as it is, and so is a call that passes precomputed vision positions.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import torch
from torch import Tensor

_HOOKS = "_tokencredit_repeated_images_hooks"  # the tower's attribute holding our hook handles


def vision_tower(model: Any) -> torch.nn.Module | None:
    """The vision encoder of a Qwen2-VL-style model (under a peft wrapper too), or None."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(getattr(model, "model", None), "visual", None)


def encode_repeated_images_once(model: Any) -> None:
    """Hook the model's vision tower so that consecutive identical images are encoded once (idempotent)."""
    tower = vision_tower(model)
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
        return output

    setattr(tower, _HOOKS, (tower.register_forward_pre_hook(before, with_kwargs=True), tower.register_forward_hook(after, with_kwargs=True)))


def encode_every_image(model: Any) -> None:
    """Undo encode_repeated_images_once: every image through the tower again (benchmarks compare the two)."""
    tower = vision_tower(model)
    if tower is not None and hasattr(tower, _HOOKS):
        for handle in getattr(tower, _HOOKS):
            handle.remove()
        delattr(tower, _HOOKS)


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
