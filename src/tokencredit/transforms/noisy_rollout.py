"""NoisyRollout (Liu et al., "NoisyRollout: Reinforcing Visual Reasoning with Data Augmentation", arXiv 2504.13055).

Half of each prompt's rollouts are sampled from a noised copy of its image; rewards, advantages and
the policy update all use the clean image (the trainer keeps the clean prompts). The noise is a
forward-diffusion step of strength t, annealed over training (the paper's Eq. 3):
    t = α₀ · (1 − sigmoid(λ · (progress − γ))),  progress = global_step / max_steps,
    β = 1 − ᾱ_⌊t⌋, ᾱ_t = Π_{i≤t}(1 − β_i), β_i = sigmoid(linspace(−6, 6, 1000))_i · (5e-3 − 1e-5) + 1e-5,
    x̃ = floor(255 · clip(sqrt(1 − β)·x + sqrt(β)·ε, 0, 1)),  x in [0, 1],
with t clamped to [0, noise_t_max]. Defaults (α₀ 450, λ 60, γ 1/3 of training) are NoisyRollout's
MMK12-7B script as the fork transcribes it.

The official repository (real-absolute-AI/NoisyRollout, verl/utils/image_aug.py) is not readable
here; this follows the zsxm1998/awesome-perception-aware-rlvr fork's transcription of it:
verl/utils/perturbations/pixel.py at commit 5d666a136cba650c7869eadef519938182da8b2f: `compute_noise_schedule` (with noise_t_mid),
`vp_diffusion_params_from_fixed_t`, `vp_diffusion_noise` (rounding "floor"), and
examples/comparison/qwen3_vl_4b/noisyrollout.sh at commit 3765ad2a03b4c55dff3f7341a82ec5b40212f388
(noise_t_init 450, noise_gamma 60, noise_t_mid 1/3, noise_t_max 1000, 4 of 8 rollouts noised).
Noised rows: the last ⌊G · noisy_fraction⌋ of each group of G (TRL repeats a prompt G times in a row);
each noised row draws its own ε from the step's generator. Forwards: none added (generation only).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from tokencredit.counterfactual import DIFFUSION_STEPS, noise_fraction, noise_step, vp_diffusion_noise
from tokencredit.transforms import TransformContext, TransformFn, image_parts, register_transform
from tokencredit.weighting import check_range

def noised_image(image: Image.Image, beta: float, generator: torch.Generator, rounding: str = "floor") -> Image.Image:
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).float()
    noise = torch.randn(pixels.shape, generator=generator, device=generator.device).to(pixels.device)
    return Image.fromarray(vp_diffusion_noise(pixels, beta, noise, rounding).to(torch.uint8).numpy())


@register_transform("noisy_rollout")
def noisy_rollout(
    noise_t_init: float = 450.0, noise_gamma: float = 60.0, noise_t_mid: float = 1 / 3, noise_t_max: float = 1000.0,
    noisy_fraction: float = 0.5, rounding: str = "floor",
) -> TransformFn:  # fmt: skip
    check_range("noise_t_init", noise_t_init, 0.0)
    check_range("noise_t_max", noise_t_max, 0.0, DIFFUSION_STEPS, low_open=True)
    check_range("noise_t_mid", noise_t_mid, 0.0, 1.0)
    check_range("noisy_fraction", noisy_fraction, 0.0, 1.0)
    if rounding not in ("floor", "round"):
        raise ValueError(f"rounding={rounding!r} must be 'floor' or 'round'")

    def transform(prompts: list[list[dict[str, Any]]], ctx: TransformContext) -> list[list[dict[str, Any]]]:
        beta = noise_fraction(noise_step(ctx.progress, noise_t_init, noise_gamma, noise_t_mid, noise_t_max))
        clean = ctx.group_size - math.floor(ctx.group_size * noisy_fraction)
        out = []
        for i, prompt in enumerate(prompts):
            if i % ctx.group_size >= clean:
                prompt = [{**m, "content": [dict(p) for p in m["content"]]} if isinstance(m["content"], list) else m for m in prompt]
                for part in image_parts(prompt):
                    part["image"] = noised_image(part["image"], beta, ctx.generator, rounding)
            out.append(prompt)
        return out

    return transform
