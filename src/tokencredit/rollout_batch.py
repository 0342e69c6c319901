"""Row selection and concatenation of TRL GRPO generation batches (and of the prompts generated from).

DAPO's dynamic sampling keeps only groups with mixed rewards and fills the batch from further
generation rounds. Rounds differ in padded widths (prompts are left-padded, completions
right-padded) and Qwen-style `pixel_values` are flat over image patches, so rows cannot be
concatenated naively; these helpers do it once, for every key TRL's batch can hold.
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

LEFT_PADDED = ("prompt_ids", "prompt_mask")
RIGHT_PADDED = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "sampling_per_token_logps",
    "ref_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
# Per-token over prompt + completion: left part is padded like the prompt, right like the completion.
PROMPT_AND_COMPLETION = ("mm_token_type_ids", "token_type_ids")


def _pad(tensors: list[torch.Tensor], width: int, side: str, value: float) -> torch.Tensor:
    out = []
    for t in tensors:
        missing = width - t.size(1)
        pad = t.new_full((t.size(0), missing), value)
        out.append(torch.cat([pad, t] if side == "left" else [t, pad], dim=1))
    return torch.cat(out, dim=0)


def merge_rows(batches: list[dict[str, Any]], rows: list[list[int]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate `batches[k][rows[k]]` over k into one batch with consistent padding."""
    split = [split_pixel_values_by_grid(b) for b in batches]
    index = [torch.as_tensor(r, dtype=torch.long) for r in rows]
    merged: dict[str, Any] = {}
    for key, first in split[0].items():
        values = [b[key] for b in split]
        if first is None or key == "num_items_in_batch":
            continue
        if isinstance(first, list):
            merged[key] = [v[i] for v, r in zip(values, rows) for i in r]
        elif key in LEFT_PADDED or key in RIGHT_PADDED:
            side = "left" if key in LEFT_PADDED else "right"
            value = pad_token_id if key in ("prompt_ids", "completion_ids") else 0
            if key == "tool_mask":
                value = 1
            width = max(v.size(1) for v in values)
            merged[key] = _pad([v[i] for v, i in zip(values, index)], width, side, value)
        elif key in PROMPT_AND_COMPLETION:
            p_widths = [b["prompt_ids"].size(1) for b in split]
            prompts = [v[i, :p] for v, i, p in zip(values, index, p_widths)]
            completions = [v[i, p:] for v, i, p in zip(values, index, p_widths)]
            merged[key] = torch.cat(
                [
                    _pad(prompts, max(t.size(1) for t in prompts), "left", 0),
                    _pad(completions, max(t.size(1) for t in completions), "right", 0),
                ],
                dim=1,
            )
        elif isinstance(first, torch.Tensor) and first.ndim >= 1:
            merged[key] = torch.cat([v[i] for v, i in zip(values, index)], dim=0)
        else:
            merged[key] = first
    mask = merged["completion_mask"] if "tool_mask" not in merged else merged["completion_mask"] * merged["tool_mask"]
    merged["num_items_in_batch"] = mask.sum()
    return unsplit_pixel_values_by_grid(merged)


def generation_rows(fields: dict[str, Any], images: list | None, rows: slice) -> dict[str, Any]:
    """The multimodal fields of `rows` of the prompts TRL generates from (`_tokenize_prompts`: numpy
    arrays or tensors; Qwen-style pixel_values flat over image patches, image_grid_thw one row per
    image, other fields one entry per prompt); `images`: each prompt's images (None: none). A part
    without images gets no pixel keys, as in TRL's own tool loop."""
    if not fields or images is None:
        return fields
    counts = [len(own) if own else 0 for own in images]
    first = sum(counts[: rows.start])
    last = first + sum(counts[rows])
    part = {key: value[rows] for key, value in fields.items() if key not in ("pixel_values", "image_grid_thw")}
    if first == last:
        return part
    grid = fields["image_grid_thw"]
    patches = [0]
    for t, h, w in grid[:last].tolist():
        patches.append(patches[-1] + t * h * w)
    return {**part, "image_grid_thw": grid[first:last], "pixel_values": fields["pixel_values"][patches[first] : patches[last]]}


def mixed_groups(rewards: torch.Tensor, group_size: int, tolerance: float = 1e-6) -> torch.Tensor:
    """Bool [num_groups]: groups whose rewards span more than `tolerance` (NaN rewards left out).

    Decided from the rewards, not the advantages: TRL's float32 group mean leaves advantages of
    about 6e-4 in a group whose rewards are all 0.9 + 0.1 (accuracy + format), which is not mixed.
    """
    grouped = rewards.view(-1, group_size)
    scored = ~grouped.isnan()
    high = grouped.masked_fill(~scored, -torch.inf).amax(dim=1)
    low = grouped.masked_fill(~scored, torch.inf).amin(dim=1)
    return high - low > tolerance
