"""Inputs of the scoring forwards: the real input I and the counterfactual inputs I' (METHODS.md §1).

Each builder returns keyword arguments for the backbone (`model.model`, a VLM of any family)
over the sequence prompt + completion, whose last T columns are the completion. Position ids are
always passed explicitly, so left padding and the image's 3-D rope positions (Qwen; InternVL's
are 1-D) are right in every forward, and `mask_visual_attention` keeps exactly the real positions.

- `drop_image`: `batch["text_prompt_ids"/"text_prompt_mask"]`, the prompt re-tokenized without the
  image (left padded), followed by the same completion ids.
- `mask_visual_attention`: the real tokens and positions with the image-token columns of the
  attention mask set to 0, so no query sees the image.
- `patch_blackening`, `gaussian_noise`, `blur`, `gray`: the real tokens with
  `batch["cf_pixel_values"]`, which `perturb_pixel_values` makes from the real pixel values.
- `salient_value_mean` (CFPO): the real inputs; the change is inside the model, in every decoder
  attention layer, while `counterfactual_intervention` is entered around the forward
  (tokencredit.salient_values: the most-attended image values replaced by their mean).

`counterfactual_batch` builds those extra batch keys from TRL's raw input rows and processor.

Pixel perturbations read pixel_values through the model family's `PatchLayout`
(tokencredit.families): Qwen's rows of patches with `image_grid_thw`, or InternVL's tiles. So
they work on the resized image (InternVL: on each tile), as VPPO's do.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tokencredit.families import PatchLayout
from tokencredit.salient_values import THRESHOLD_STD, salient_value_mean

COUNTERFACTUALS = (
    "drop_image", "mask_visual_attention", "patch_blackening", "gaussian_noise", "blur", "gray", "pixel_value_noise", "harmonized_patches",
    "salient_value_mean",
)  # fmt: skip
PIXEL_PERTURBATIONS = ("patch_blackening", "gaussian_noise", "blur", "gray", "pixel_value_noise", "harmonized_patches")

BLACK_PROB = 0.5  # VPPO: each patch blackened independently with this probability
NOISE_SIGMA = 189.0  # VPPO ablation: additive Gaussian noise, on the 0-255 scale
BLUR_RADIUS = 6.0  # VPPO ablation: PIL GaussianBlur radius, i.e. the Gaussian's standard deviation in pixels
GRAY_LEVEL = 128.0  # VPPO ablation: the whole image solid grey, on the 0-255 scale
# VEPO (Leonnnnnn929/VEPO verl/trainer/ray_trainer.py, noisy_image_mode "gaussian"): N(0, 2^2) added to the
# processor-normalized pixel_values, no clamp ("about twice the natural per-pixel std").
PIXEL_VALUE_NOISE_STD = 2.0
# NoisyRollout's forward-diffusion schedule (also DVRP's noised view): β_i = sigmoid(linspace(−6, 6, 1000))_i ·
# (5e-3 − 1e-5) + 1e-5, ᾱ_t = Π_{i≤t}(1 − β_i); a step t noises x to sqrt(ᾱ_t)·x + sqrt(1 − ᾱ_t)·ε.
DIFFUSION_STEPS = 1000
# The awesome-perception-aware-rlvr fork's controlled comparison harmonizes every paper's perturbation
# to this (examples/comparison/README.md: corrupt_image=random_patch, patch_size 16, black_prob 0.6,
# corrupt_image_position=prompt): 16-px squares of the image blackened with probability 0.6, one
# mask per prompt, whatever the model's own patch size.
HARMONIZED_PATCH = 16
HARMONIZED_BLACK_PROB = 0.6


def image_token_mask(model: Any, input_ids: Tensor) -> Tensor:
    return input_ids == model.config.image_token_id


def position_ids(model: Any, input_ids: Tensor, attention_mask: Tensor, image_grid_thw: Tensor | None = None) -> Tensor:
    """Rope positions: Qwen's 3-D positions [3, B, L] with images, plain [B, L] positions without."""
    if image_grid_thw is not None:
        get_rope_index = model.model.get_rope_index
        kwargs = {"image_grid_thw": image_grid_thw, "attention_mask": attention_mask}
        if "mm_token_type_ids" in inspect.signature(get_rope_index).parameters:  # transformers >= 5.2x
            kwargs["mm_token_type_ids"] = image_token_mask(model, input_ids).long()  # 0 text, 1 image
        positions, _ = get_rope_index(input_ids, **kwargs)
        return positions
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _inputs(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, batch: dict[str, Any], pixel_values: Tensor | None) -> dict[str, Any]:
    input_ids = torch.cat([prompt_ids, batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([prompt_mask, batch["completion_mask"]], dim=1).long()
    grid = batch.get("image_grid_thw") if pixel_values is not None else None
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids(model, input_ids, attention_mask, grid),
        "pixel_values": pixel_values,
    }
    return {**inputs, "image_grid_thw": grid} if "image_grid_thw" in batch else inputs  # InternVL has no grid


def real_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    return _inputs(model, batch["prompt_ids"], batch["prompt_mask"], batch, batch.get("pixel_values"))


def counterfactual_inputs(model: Any, batch: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "drop_image":
        if "text_prompt_ids" not in batch or "text_prompt_mask" not in batch:
            raise ValueError("counterfactual 'drop_image' needs batch['text_prompt_ids'] and batch['text_prompt_mask'] (the prompt without the image)")
        return _inputs(model, batch["text_prompt_ids"], batch["text_prompt_mask"], batch, None)
    if kind == "mask_visual_attention":
        inputs = real_inputs(model, batch)
        inputs["attention_mask"] = inputs["attention_mask"].masked_fill(image_token_mask(model, inputs["input_ids"]), 0)
        # No query attends to an image position, so the vision tower's output cannot matter: skip it.
        inputs["pixel_values"] = None
        if "image_grid_thw" in inputs:
            inputs["image_grid_thw"] = None
        return inputs
    if kind == "salient_value_mean":
        return real_inputs(model, batch)
    if kind in PIXEL_PERTURBATIONS:
        if batch.get("cf_pixel_values") is None:
            raise ValueError(f"counterfactual {kind!r} needs batch['cf_pixel_values']; make it with tokencredit.counterfactual.perturb_pixel_values")
        return _inputs(model, batch["prompt_ids"], batch["prompt_mask"], batch, batch["cf_pixel_values"])
    raise ValueError(f"unknown counterfactual {kind!r}; counterfactuals are {list(COUNTERFACTUALS)}")


def counterfactual_intervention(model: Any, batch: dict[str, Any], kind: str, inputs: dict[str, Any], chunk_size: int = 1024) -> AbstractContextManager:
    """What a counterfactual changes inside the model while the forward of its `inputs` runs: salient_value_mean's
    attention (its threshold from batch["cf_threshold_std"]); nothing for the others."""
    if kind != "salient_value_mean":
        return nullcontext()
    threshold_std = float(batch["cf_threshold_std"]) if "cf_threshold_std" in batch else THRESHOLD_STD
    return salient_value_mean(model, inputs["input_ids"], inputs["attention_mask"], threshold_std, chunk_size)


def _without_images(prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversational prompt with its image parts removed."""
    return [
        {**m, "content": [p for p in m["content"] if p.get("type") != "image"]} if isinstance(m["content"], list) else m
        for m in prompt
    ]


def counterfactual_batch(
    kind: str,
    batch: dict[str, Any],
    inputs: list[dict[str, Any]],
    processing_class: Any,
    generator: torch.Generator,
    layout: PatchLayout | None = None,
    **options: Any,
) -> dict[str, Tensor]:
    """The batch keys a counterfactual needs beyond TRL's batch, built from TRL's raw `inputs` rows.

    drop_image: text_prompt_ids/text_prompt_mask, each row's conversational prompt without its
    image parts through the chat template, left padded. Pixel perturbations: cf_pixel_values, with
    the image processor's normalization and the family's patch `layout`
    (`Family.patch_layout(processor)`), `options` passed to `perturb_pixel_values` (e.g. PAPO's
    black_prob). salient_value_mean: cf_threshold_std, its `threshold_std` option (CFPO's λ) as a
    0-d tensor. mask_visual_attention needs nothing.
    """
    if kind == "drop_image":
        tokenized = processing_class.apply_chat_template(
            conversation=[_without_images(x["prompt"]) for x in inputs], add_generation_prompt=True, tokenize=True, return_dict=True
        )
        rows = [torch.as_tensor(ids) for ids in tokenized["input_ids"]]
        width = max(len(r) for r in rows)
        pad_id = getattr(processing_class, "tokenizer", processing_class).pad_token_id
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
        device = batch["prompt_ids"].device
        return {"text_prompt_ids": ids.to(device), "text_prompt_mask": mask.to(device)}
    if kind in PIXEL_PERTURBATIONS:
        if layout is None:
            raise ValueError(f"counterfactual {kind!r} needs the model family's patch layout (Family.patch_layout)")
        ip = processing_class.image_processor
        grid = batch[layout.grid_key] if layout.grid_key else None
        pixels = batch["pixel_values"]
        return {"cf_pixel_values": perturb_pixel_values(kind, pixels, grid, ip.image_mean, ip.image_std, generator, layout, **options)}
    if kind == "mask_visual_attention":
        return {}
    if kind == "salient_value_mean":
        return {"cf_threshold_std": torch.tensor(float(options.get("threshold_std", THRESHOLD_STD)))}
    raise ValueError(f"unknown counterfactual {kind!r}; counterfactuals are {list(COUNTERFACTUALS)}")


def _gaussian_blur(frames: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [N, C, H, W] with edge replication (PIL's GaussianBlur approximates this)."""
    half = math.ceil(3 * sigma)
    offsets = torch.arange(-half, half + 1, dtype=frames.dtype, device=frames.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = frames.shape[1]
    x = F.pad(frames, (half, half, half, half), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _unit_pixels(pixel_values: Tensor, image_mean: Sequence[float], image_std: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """pixel_values rows as pixels in [0, 1], [rows, C, values per channel], and the processor's mean and std."""
    channels = len(image_mean)
    mean = torch.tensor(image_mean, dtype=torch.float32, device=pixel_values.device).view(1, channels, 1)
    std = torch.tensor(image_std, dtype=torch.float32, device=pixel_values.device).view(1, channels, 1)
    return pixel_values.float().reshape(pixel_values.shape[0], channels, -1) * std + mean, mean, std


def _harmonized_patches(pixels: Tensor, image_grid_thw: Tensor | None, random: Any, layout: PatchLayout) -> Tensor:
    """Each image (InternVL: each tile) with HARMONIZED_PATCH-px squares of its resized frames blackened
    with probability HARMONIZED_BLACK_PROB (the last row and column of squares cut at the edge). One
    mask per prompt: identical images (a prompt's image, repeated for each of its G responses) share
    the mask drawn for the first of them in the call, which in training is the process's whole
    generated batch. `pixels` in [0, 1], in the layout's shape."""
    masks: dict[bytes, Tensor] = {}
    out = []
    for frames in layout.to_frames(pixels, image_grid_thw):
        key = hashlib.sha256(frames.detach().cpu().numpy().tobytes()).digest()
        if key not in masks:
            height, width = frames.shape[-2:]
            cells = (-(-height // HARMONIZED_PATCH), -(-width // HARMONIZED_PATCH))
            kept = (random(*cells) >= HARMONIZED_BLACK_PROB).to(frames.dtype)
            masks[key] = kept.repeat_interleave(HARMONIZED_PATCH, 0).repeat_interleave(HARMONIZED_PATCH, 1)[:height, :width]
        out.append(frames * masks[key])
    return layout.to_rows(out, image_grid_thw)


def perturb_pixel_values(
    kind: str,
    pixel_values: Tensor,
    image_grid_thw: Tensor | None,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    generator: torch.Generator,
    layout: PatchLayout,
    black_prob: float = BLACK_PROB,
) -> Tensor:
    """The counterfactual image I' of every image in a batch, as normalized pixel_values in `layout`.

    `image_mean`/`image_std` are the image processor's; `image_grid_thw` is None for a grid-less
    layout (InternVL's tiles, each blurred on its own); `black_prob`: patch_blackening's
    probability per patch (VPPO's 0.5; PAPO's 0.6). Randomness (a fresh blackening mask or
    noise per image, i.e. per response in a GRPO batch) comes only from `generator`.
    """
    if kind not in PIXEL_PERTURBATIONS:
        raise ValueError(f"unknown image perturbation {kind!r}; perturbations are {list(PIXEL_PERTURBATIONS)}")
    if kind == "pixel_value_noise":  # in the normalized space itself
        noise = torch.randn(pixel_values.shape, generator=generator, device=generator.device).to(pixel_values.device)
        return (pixel_values.float() + noise * PIXEL_VALUE_NOISE_STD).to(pixel_values.dtype)
    channels = len(image_mean)
    mean = torch.tensor(image_mean, dtype=torch.float32, device=pixel_values.device).view(1, channels, 1)
    std = torch.tensor(image_std, dtype=torch.float32, device=pixel_values.device).view(1, channels, 1)
    x = layout.patches(pixel_values.float()) * std + mean  # [patches, C, pixels], in [0, 1]
    n_patches = x.shape[0]

    def random(*shape: int, normal: bool = False) -> Tensor:
        draw = torch.randn if normal else torch.rand
        return draw(*shape, generator=generator, device=generator.device).to(x.device)

    if kind == "patch_blackening":
        x = x * (random(n_patches) >= black_prob).view(n_patches, 1, 1)
    elif kind == "gaussian_noise":
        x = (x + random(*x.shape, normal=True) * (NOISE_SIGMA / 255.0)).clamp(0.0, 1.0)
    elif kind == "gray":
        x = torch.full_like(x, GRAY_LEVEL / 255.0)
    elif kind == "harmonized_patches":
        x = layout.patches(_harmonized_patches(layout.from_patches(x, pixel_values), image_grid_thw, random, layout))
    else:  # blur, image by image
        pixels = layout.from_patches(x, pixel_values)
        blurred = [_gaussian_blur(frames, BLUR_RADIUS) for frames in layout.to_frames(pixels, image_grid_thw)]
        x = layout.patches(layout.to_rows(blurred, image_grid_thw)).clamp(0.0, 1.0)
    return layout.from_patches((x - mean) / std, pixel_values).to(pixel_values.dtype)


def vp_diffusion_noise(image: Tensor, beta: float, noise: Tensor, rounding: str = "floor") -> Tensor:
    """A forward-diffusion step of an 8-bit image [..., H, W] (values 0-255): sqrt(1 − β)·x + sqrt(β)·ε on
    [0, 1] pixels, clipped, back to 0-255 by `rounding` ("floor": truncation, as NoisyRollout's
    ToPILImage; "round"). `noise` ε ~ N(0, 1) has the image's shape (the caller draws it)."""
    if rounding not in ("floor", "round"):
        raise ValueError(f"rounding must be 'floor' or 'round', got {rounding!r}")
    noisy = (math.sqrt(max(1.0 - beta, 0.0)) * (image.float() / 255.0) + math.sqrt(beta) * noise.float()).clamp(0.0, 1.0) * 255.0
    return torch.floor(noisy) if rounding == "floor" else torch.round(noisy)


def diffusion_noised_pixel_values(
    pixel_values: Tensor,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    beta: float,
    generator: torch.Generator,
    temporal_patch_size: int = 2,
    rounding: str = "round",
) -> Tensor:
    """Every image of a batch after one forward-diffusion step (`vp_diffusion_noise`, on the 8-bit scale), as
    normalized pixel_values rows. One noise draw per pixel, shared by a row's `temporal_patch_size` copies
    of the frame (the processor repeats a still image over them)."""
    x, mean, std = _unit_pixels(pixel_values, image_mean, image_std)
    frames = x.reshape(x.shape[0], x.shape[1], temporal_patch_size, -1)
    noise = torch.randn(frames[:, :, :1].shape, generator=generator, device=generator.device).to(x.device)
    noised = vp_diffusion_noise(frames * 255.0, beta, noise.expand_as(frames), rounding) / 255.0
    return ((noised.reshape(x.shape) - mean) / std).reshape(pixel_values.shape).to(pixel_values.dtype)


@lru_cache(maxsize=1)
def _alphas_cumprod() -> tuple[float, ...]:
    betas = torch.sigmoid(torch.linspace(-6, 6, DIFFUSION_STEPS)) * (0.5e-2 - 1e-5) + 1e-5
    return tuple(torch.cumprod(1 - betas, dim=0).tolist())


def noise_step(progress: float, noise_t_init: float, noise_gamma: float, noise_t_mid: float, noise_t_max: float) -> float:
    """The annealed diffusion step t = α₀·(1 − sigmoid(λ·(progress − γ))) at training progress in [0, 1],
    clamped to [0, noise_t_max] (NoisyRollout's Eq. 3 in its code's operation order; DVRP: γ = 0.5)."""
    progress = min(max(progress, 0.0), 1.0)
    t = noise_t_init * (1.0 - 1.0 / (1.0 + math.exp(-noise_gamma * (progress - noise_t_mid))))
    return min(max(t, 0.0), noise_t_max)


def noise_fraction(t: float) -> float:
    """β = 1 − ᾱ at step ⌊t⌋: the share of the noised image's variance that is noise."""
    return 1.0 - _alphas_cumprod()[min(max(int(t), 0), DIFFUSION_STEPS - 1)]
